"""fastbp.show_config() and `fastbp info` report what fastbp runs on."""

import io
import os

import numba
import numpy as np

import fastbp
from fastbp import cli
from fastbp._info import config


def test_config_reports_the_running_setup():
    info = config()
    assert info["fastbp"] == fastbp.__version__
    assert info["numpy"] == np.__version__ and info["numba"] == numba.__version__
    assert info["usable_cores"] == len(os.sched_getaffinity(0))
    assert "threading_layer" not in info and "OMP_WAIT_POLICY" not in info  # not used
    assert info["numba_threads"] == numba.get_num_threads()
    assert info["numba_max_threads"] == numba.config.NUMBA_NUM_THREADS
    assert info["blas"] and all("openblas" in b or "mkl" in b or "blis" in b
                                for b in info["blas"])
    assert info["jit_cache"] and os.path.isdir(info["jit_cache"])


def test_show_config_and_cli_print_every_key(capsys):
    out = io.StringIO()
    fastbp.show_config(file=out)
    keys = [line.split(":")[0] for line in out.getvalue().splitlines()]
    assert keys == list(config())
    assert cli.main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "numba_threads: " in printed and "jit_cache: " in printed
    assert cli.main(["info", "--help"]) == 0
