"""The tutorial's journey on a throwaway server (:mod:`~tsaccess.demo.journey`), and its
TimescaleDB part (:mod:`~tsaccess.demo.timescale`)."""

from tsaccess.demo.journey import DemoResult, company_policy, run_demo

__all__ = ["DemoResult", "company_policy", "run_demo"]
