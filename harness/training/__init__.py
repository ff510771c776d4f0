"""Statement-Tuning: training statements from multilingual source tasks, and the trainer (`bench train`)."""
