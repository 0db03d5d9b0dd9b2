"""infra/scripts/preflight.sh (azd preprovision + postprovision) against fake `az`/`azd`, without Python.

Region without Flex Consumption, a VM size Batch does not offer there or without a temporary disk, a disk too
small for the slots, a core quota short of POOL_MAX_NODES: each stops `azd up` with what to do."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra.bicep import MAIN, Evaluator, parse
from tests.infra.hook_fakes import AZD_SUBSCRIPTION, REPO, Fakes, Run

D2DS_V5 = "standardDDSv5Family\t2\t76800"  # 2 vCPUs, 75 GiB temporary disk (az batch location list-skus)
D2S_V5 = "standardDSv5Family\t2\t0"        # no temporary disk


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    f = Fakes(tmp_path)
    (tmp_path / "sku.tsv").write_text(D2DS_V5 + "\n")
    # dedicated total, low-priority total, per-family enforced, this family's quota
    (tmp_path / "quota.tsv").write_text("100\t0\tTrue\t16\n")
    return f


def _pinned(run: Run) -> None:
    for call in run.calls:
        if call[0] == "az":
            assert call[call.index("--subscription") + 1] == AZD_SUBSCRIPTION, call


def test_all_good(fakes: Fakes):
    run = fakes.run("preflight.sh")
    assert run.result.returncode == 0, run.output
    _pinned(run)
    out = run.result.stdout
    assert "ok: westeurope offers Flex Consumption" in out
    assert "ok: Batch offers Standard_D2ds_v5 in westeurope (2 vCPUs, family standardDDSv5Family)" in out
    assert "ok: temporary disk 75 GiB >= 2 slots x 2 x MAX_INPUT_BYTES (40 GiB)" in out
    assert "ok: Batch account baabc has 16 dedicated cores of family standardDDSv5Family >= POOL_MAX_NODES x 2 = 8" in out
    (skus,) = run.az("batch", "location")
    assert skus[skus.index("--location") + 1] == "westeurope"


def test_region_without_flex_consumption(fakes: Fakes):
    fakes.values["AZURE_LOCATION"] = "China North 3"
    fakes.write_values()
    run = fakes.run("preflight.sh")
    print(run.result.stderr)
    assert run.result.returncode != 0
    assert "China North 3 does not offer Flex Consumption" in run.result.stderr
    assert "az functionapp list-flexconsumption-locations -o table" in run.result.stderr
    assert "azd env set HOSTING_PLAN Dedicated" in run.result.stderr
    # the Dedicated plan needs no Flex region
    assert fakes.run("preflight.sh", HOSTING_PLAN="Dedicated").result.returncode == 0


def test_quota_shortfall_stops_the_deploy_with_the_request_command(fakes: Fakes):
    (fakes.root / "quota.tsv").write_text("100\t0\tTrue\t4\n")
    run = fakes.run("preflight.sh")
    print(run.result.stderr)
    assert run.result.returncode != 0
    err = run.result.stderr
    assert "Batch account baabc has 4 dedicated cores of family standardDDSv5Family; POOL_MAX_NODES=4 x 2 vCPUs needs 8" in err
    assert "every upload stays queued" in err
    assert "Quotas > Request quota increase (Dedicated, standardDDSv5Family, 8 cores)" in err
    assert (f'az quota update --scope "/subscriptions/{AZD_SUBSCRIPTION}/resourceGroups/rg-test/providers/'
            'Microsoft.Batch/batchAccounts/baabc" --resource-name standardDDSv5Family --limit-object value=8') in err
    assert "azd env set POOL_MAX_NODES 2" in err
    warned = fakes.run("preflight.sh", PREFLIGHT_QUOTA="warn")
    assert warned.result.returncode == 0 and "WARNING: Batch account baabc has 4" in warned.result.stderr


def test_total_dedicated_quota_when_the_family_quota_is_not_enforced(fakes: Fakes):
    (fakes.root / "quota.tsv").write_text("6\t0\tFalse\tNone\n")
    run = fakes.run("preflight.sh")
    assert run.result.returncode != 0 and "has 6 dedicated cores;" in run.result.stderr


def test_spot_needs_low_priority_cores(fakes: Fakes):
    run = fakes.run("preflight.sh", USE_SPOT="true")
    assert run.result.returncode != 0
    assert "has 0 low-priority (Spot) cores" in run.result.stderr


def test_before_the_first_provisioning_the_quota_waits_for_the_account(fakes: Fakes):
    del fakes.values["AZURE_BATCH_ACCOUNT_NAME"]
    fakes.write_values()
    run = fakes.run("preflight.sh")
    assert run.result.returncode == 0, run.output
    assert "checked after provisioning" in run.result.stdout
    assert not run.az("batch", "account")


def test_vm_size_not_offered_or_without_temporary_disk(fakes: Fakes):
    (fakes.root / "sku.tsv").unlink()
    run = fakes.run("preflight.sh", POOL_VM_SIZE="Standard_Nope_v9")
    assert run.result.returncode != 0
    assert "Batch does not offer Standard_Nope_v9 in westeurope" in run.result.stderr
    (fakes.root / "sku.tsv").write_text(D2S_V5 + "\n")
    run = fakes.run("preflight.sh", POOL_VM_SIZE="Standard_D2s_v5")
    assert run.result.returncode != 0
    assert "Standard_D2s_v5 has no local temporary disk" in run.result.stderr


def test_disk_per_slot_and_slot_cap(fakes: Fakes):
    run = fakes.run("preflight.sh", MAX_INPUT_BYTES=str(20 * 1024**3))
    assert run.result.returncode != 0
    assert "cannot hold 2 slots x 2 x MAX_INPUT_BYTES (80 GiB)" in run.result.stderr
    run = fakes.run("preflight.sh", POOL_TASK_SLOTS_PER_NODE="9")
    assert run.result.returncode != 0 and "exceeds Batch's limit" in run.result.stderr


def test_defaults_are_main_bicep_defaults():
    script = (REPO / "infra" / "scripts" / "preflight.sh").read_text()
    defaults = dict(re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", script))
    evaluator = Evaluator(parse(MAIN), {})
    params = json.loads((MAIN.parent / "main.parameters.json").read_text())["parameters"]
    azd_default = {m.group(1): (m.group(2), name) for name, p in params.items()
                   if (m := re.fullmatch(r"\$\{([A-Z_]+)=(.*)\}", str(p["value"])))}
    for variable in ("HOSTING_PLAN", "POOL_VM_SIZE", "POOL_MAX_NODES", "POOL_TASK_SLOTS_PER_NODE", "USE_SPOT",
                     "MAX_INPUT_BYTES"):
        value, param = azd_default[variable]
        assert defaults[variable] == value, variable
        bicep = evaluator.param(param)
        assert str(bicep).lower() == value.lower(), (variable, bicep)
