"""Drives a real videogen installation from outside, for the end-to-end tests and the benchmarks: its roles as
processes (`platform`), hosts as network namespaces (`hosts`), a simulated remote generation server of each dialect
(`remote_sim`) and a lossy webhook relay (`webhook_relay`). Nothing here is imported by the platform itself."""
