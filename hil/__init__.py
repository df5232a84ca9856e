"""The ground / test harness (never flown): board drivers, fault-injection campaigns, reports.

Nothing here is imported by the flown runtime. The injection primitives the harness will use
are shared with ``flight run``'s simulated radiation and live in :mod:`flight.inject` and
:mod:`flight.radiation`; campaigns, board drivers and reports arrive with the HIL issues.
"""
