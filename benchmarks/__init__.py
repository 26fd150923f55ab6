"""Benchmarks of qianfan-export-wait against its simulator (served from a child process).

``python -m benchmarks [--quick] [--only NAME]``; see ``benchmarks/RESULTS.md``.
"""
