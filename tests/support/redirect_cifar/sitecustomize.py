"""Tests only: with this folder on PYTHONPATH, Python runs this file at start-up, and torchvision's CIFAR classes then
download from the URL and check the MD5 sums that the JSON file named by RESNET_REPRO_TEST_CIFAR_SOURCES gives (a
generated archive on a local server, tests/support/cifar_server.py). Nothing else changes: the project's code runs
torchvision's own download, extraction and verification, as on the real data set."""

import json
import os

SOURCES_ENV = "RESNET_REPRO_TEST_CIFAR_SOURCES"

if os.environ.get(SOURCES_ENV):
    from resnet_repro.bench.cifar_files import CIFAR_MODULE, after_import

    with open(os.environ[SOURCES_ENV]) as f:
        sources = json.load(f)

    def redirect(module) -> None:
        for class_name, attributes in sources.items():
            for attribute, value in attributes.items():
                setattr(getattr(module, class_name), attribute, value)

    after_import(CIFAR_MODULE, redirect)
