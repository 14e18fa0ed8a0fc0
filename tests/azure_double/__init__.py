"""A local double of Azure Resource Manager for tests: real azure.azcollection code talks to it
through a loopback CONNECT proxy that terminates TLS for management.azure.com with a test CA.

    from tests.azure_double import AzureDouble
    with AzureDouble(tmp_path) as double:
        double.state.add_vm("rg-waa", "waa-a-01", tags={"openadapt-role": "waa", "openadapt-pool": "a"})
        subprocess.run([...], env=double.client_env())

pytest fixtures: tests/azure_double/fixture.py (azure_double, azure_env).
"""
from .arm import ARM_BASE
from .ca import ARM_HOST
from .server import AzureDouble
from .state import ArmError, ArmState, Call, DEFAULT_SUBSCRIPTION, SSH_PORT_TAG, TEST_ADDRESS_TAG

__all__ = ["ARM_BASE", "ARM_HOST", "ArmError", "ArmState", "AzureDouble", "Call", "DEFAULT_SUBSCRIPTION",
           "SSH_PORT_TAG", "TEST_ADDRESS_TAG"]
