"""Shared set-up for Capstan's end-to-end tests.

The ctest fixture `cluster_up` starts the real control plane (tests/cluster/cluster.sh)
and writes $CAPSTAN_CLUSTER_DIR/env; these tests read it, so they drive the cluster
exactly as a user would: with kubectl.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import kube  # noqa: E402

kube.load_cluster_env()
