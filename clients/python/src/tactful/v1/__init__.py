"""Stubs generated from proto/tactful/v1 by grpcio-tools (do not edit: regenerate with
scripts/python-client-test.sh --write, which the test script checks)."""
