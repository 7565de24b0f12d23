"""The embedded simulator: a fake GoldRush Pipeline API for the demo, the tests and benchmarks.

`world` computes pipelines, pods and log lines lazily from time and a seed (pure, no I/O);
`faults` decides which requests fail and how; `app` serves both over aiohttp; `recorder` keeps what
was served; `control` changes keys, pipelines and faults mid-run; `cli` is `follower simulate`.
"""

from follower.simulator.app import CONTROL, PREFIX, RECORDER, WORLD, create_app
from follower.simulator.cli import add_simulate_arguments, run_simulate, serve, settings_from_args
from follower.simulator.control import Control
from follower.simulator.faults import FaultSettings
from follower.simulator.recorder import Recorder
from follower.simulator.world import PodWindow, SimSettings, World

__all__ = [
    "CONTROL",
    "PREFIX",
    "RECORDER",
    "WORLD",
    "Control",
    "FaultSettings",
    "PodWindow",
    "Recorder",
    "SimSettings",
    "World",
    "add_simulate_arguments",
    "create_app",
    "run_simulate",
    "serve",
    "settings_from_args",
]
