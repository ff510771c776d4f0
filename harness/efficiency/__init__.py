"""Efficiency measurements (`bench efficiency`): max batch size, throughput, latency, memory, ceilings."""
