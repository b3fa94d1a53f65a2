"""The runner: link an application's ``start`` parameters to backends and run it."""

from ._app import App as App
from ._app import AppError as AppError
from ._app import load_app as load_app
from ._forward import ForwardCounters as ForwardCounters
from ._forward import Forwarder as Forwarder
from ._graph import Graph as Graph
from ._graph import describe_dot as describe_dot
from ._graph import describe_text as describe_text
from ._graph import plan as plan
from ._graph import run_app as run_app
from ._graph import unused_flags as unused_flags
from ._options import DEFAULT_GRACE as DEFAULT_GRACE
from ._options import Forward as Forward
from ._options import OptionError as OptionError
from ._options import Options as Options
from ._options import parse_clock_start as parse_clock_start
from ._options import parse_forward as parse_forward
from ._options import parse_setting as parse_setting
from ._options import parse_size as parse_size
from ._options import parse_tls as parse_tls
from ._providers import PROVIDERS as PROVIDERS
from ._providers import Choice as Choice
from ._providers import LinkError as LinkError

__all__ = [
    "DEFAULT_GRACE",
    "PROVIDERS",
    "App",
    "AppError",
    "Choice",
    "Forward",
    "ForwardCounters",
    "Forwarder",
    "Graph",
    "LinkError",
    "OptionError",
    "Options",
    "describe_dot",
    "describe_text",
    "load_app",
    "parse_clock_start",
    "parse_forward",
    "parse_setting",
    "parse_size",
    "parse_tls",
    "plan",
    "run_app",
    "unused_flags",
]
