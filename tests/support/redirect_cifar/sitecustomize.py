"""Tests only: with this folder on PYTHONPATH, Python runs this file at start-up, and torchvision's CIFAR classes then
download from the URL and check the MD5 sums that the JSON file named by RESNET_REPRO_TEST_CIFAR_SOURCES gives (a
generated archive on a local server, tests/support/cifar_server.py). Nothing else changes: the project's code runs
torchvision's own download, extraction and verification, as on the real data set."""

import importlib.abc
import importlib.machinery
import json
import os
import sys

SOURCES_ENV = "RESNET_REPRO_TEST_CIFAR_SOURCES"
CIFAR_MODULE = "torchvision.datasets.cifar"


class _RedirectOnImport(importlib.abc.MetaPathFinder):
    """Finds torchvision's CIFAR module as usual and, once it has run, gives its classes the generated sources."""

    def __init__(self, sources: dict[str, dict]):
        self.sources = sources

    def find_spec(self, name, path, target=None):
        if name != CIFAR_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module, sources = spec.loader.exec_module, self.sources

        def exec_module(module):
            run_module(module)
            for class_name, attributes in sources.items():
                for attribute, value in attributes.items():
                    setattr(getattr(module, class_name), attribute, value)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(SOURCES_ENV):
    with open(os.environ[SOURCES_ENV]) as f:
        sys.meta_path.insert(0, _RedirectOnImport(json.load(f)))
