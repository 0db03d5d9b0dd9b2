"""The standing pool and job the tasks run in.

Pool: a current Ubuntu LTS marketplace image with its matching node agent SKU (the tutorial's
18.04 is retired), dedicated or Spot (Batch low-priority) nodes, one task slot per core by
default, `pack` fill so whole nodes go idle and can be released, and an autoscale formula that
follows pending work from zero. Autoscale alone reacts in >= 5 minutes; the timer is
what wakes the pool and parks it at zero within about one tick.

Start task (runs as root, before any task; again after a reboot), one constant command line:
1. closes the node's metadata endpoint (IMDS, 169.254.169.254) to every process but root's, so only the
   Batch node agent (root) can get the pool identity's tokens - an ffmpeg exploit in a task (a non-admin
   auto user, shared/task_spec.py) cannot. Only on an Azure VM (the Linux agent's /var/lib/waagent):
   the local emulator runs this command on the developer's machine, whose firewall it must not touch;
2. provisions ffmpeg once per node, a no-op when it is already there (the local emulator's nodes; a
   rebooted node): the pinned static binary from FFMPEG_BINARY_URL when the pool downloads one (checked
   against FFMPEG_SHA256, passed as an environment setting), otherwise apt-get with a dpkg lock wait and
   bounded retries, because a fresh Ubuntu VM runs unattended-upgrades at boot and a bare `apt-get
   install` (the tutorial's) fails on the held lock.
The command line holds no setting, so infra/pool.json (the pool as infra/modules/batch.bicep declares it)
is generated from this module once and checked against it by the suite (tests/infra/test_pool.py).
"""
from __future__ import annotations

from datetime import timedelta

from azure.batch import models as batch_models

from .settings import NodePriority, Settings

FFMPEG_RESOURCE_NAME = "ffmpeg"


# Where the formula's judgement window sits, in minutes before the evaluation (docs/scaling.md "The formula
# against the sample lag"): samples show about a minute late, so the window ends a minute back, where all of
# its samples have arrived, and spans 3 minutes (6 samples at the service's 30 s period).
WINDOW_START_MINUTES = 4
WINDOW_END_MINUTES = 1
REQUIRED_SAMPLE_PERCENT = 70


def autoscale_formula(slots_per_node: int, max_nodes: int, priority: NodePriority,
                      minute: str = "TimeInterval_Minute") -> str:
    """Nodes = ceil(pending tasks / slots), capped, 0 when idle; scale-in lets tasks finish.

    $PendingTasks = active + running, read two ways: the freshest sample there is (`GetSample(1)`, about a
    minute old) and the maximum over the 3 minutes before the sample lag (`GetSample(4 min, 1 min)`), where
    the service has all 6 samples; the larger decides, so a burst is neither missed nor shrunk from under.
    When that window is thin (a new pool, a sample outage) the freshest sample alone decides, never a
    constant, so a gap neither pins a node nor strands a task. `max(0, GetSample(1))` reads 0 on an empty
    history whichever way the service treats it. Targets are truncated to integers by the service, hence
    the `+ slots - 1` ceiling (the docs use the same `(tasks + 3) / 4` idiom for 4 tasks per node).
    `minute` only exists so tests can run the same text on a compressed clock.
    """
    target, other = (("$TargetLowPriorityNodes", "$TargetDedicatedNodes") if priority is NodePriority.SPOT
                     else ("$TargetDedicatedNodes", "$TargetLowPriorityNodes"))
    window = f"{minute} * {WINDOW_START_MINUTES}, {minute} * {WINDOW_END_MINUTES}"
    return "\n".join([
        f"maxNodes = {max_nodes};",
        f"slotsPerNode = {slots_per_node};",
        "lastSample = max(0, $PendingTasks.GetSample(1));",
        f"samplePercent = $PendingTasks.GetSamplePercent({window});",
        f"windowMax = samplePercent < {REQUIRED_SAMPLE_PERCENT} ? 0 "
        f": max($PendingTasks.GetSample({window}, {REQUIRED_SAMPLE_PERCENT}));",
        "pending = max(lastSample, windowMax);",
        "nodes = min(maxNodes, (pending + slotsPerNode - 1) / slotsPerNode);",
        f"{target} = max(0, nodes);",
        f"{other} = 0;",
        "$NodeDeallocationOption = taskcompletion;",
    ])


IMDS_ADDRESS = "169.254.169.254"
# Only on an Azure VM: the Azure Linux agent's state directory (Batch nodes get their agent through it).
AZURE_VM_MARKER = "/var/lib/waagent"
_APT = "apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3"
START_TASK_SCRIPT = "; ".join([
    "set -e",
    "export DEBIAN_FRONTEND=noninteractive",
    # apt_install PACKAGE: with the dpkg lock wait and 5 tries 30 s apart
    f'apt_install() {{ n=0; until {_APT} update && {_APT} install -y --no-install-recommends "$1"; do '
    'n=$((n+1)); [ "$n" -ge 5 ] && return 1; sleep 30; done; }',
    f'if [ -d {AZURE_VM_MARKER} ]; then '
    "command -v iptables >/dev/null 2>&1 || apt_install iptables; "
    f'rule="OUTPUT -d {IMDS_ADDRESS}/32 -m owner ! --uid-owner 0 -j REJECT"; '
    "iptables -C $rule 2>/dev/null || iptables -I $rule; fi",
    'bin="$AZ_BATCH_NODE_SHARED_DIR/bin"',
    f"if [ -f {FFMPEG_RESOURCE_NAME} ]; then "
    f'[ -z "${{FFMPEG_SHA256:-}}" ] || echo "$FFMPEG_SHA256  {FFMPEG_RESOURCE_NAME}" | sha256sum -c - >/dev/null; '
    f'mkdir -p "$bin"; install -m 0755 {FFMPEG_RESOURCE_NAME} "$bin/ffmpeg.new"; mv -f "$bin/ffmpeg.new" "$bin/ffmpeg"; '
    "elif ! command -v ffmpeg >/dev/null 2>&1; then apt_install ffmpeg; fi",
    'PATH="$bin:$PATH" ffmpeg -version >/dev/null',
])
START_TASK_COMMAND = f"/bin/sh -c '{START_TASK_SCRIPT}'"
START_TASK_MAX_RETRIES = 2


def start_task(settings: Settings) -> batch_models.BatchStartTask:
    admin = batch_models.UserIdentity(auto_user=batch_models.AutoUserSpecification(
        scope="pool", elevation_level="admin"))
    resources = None
    environment = None
    if settings.ffmpeg_binary_url:
        identity = (batch_models.BatchNodeIdentityReference(resource_id=settings.pool_identity_resource_id)
                    if settings.pool_identity_resource_id else None)
        resources = [batch_models.ResourceFile(http_url=settings.ffmpeg_binary_url, file_path=FFMPEG_RESOURCE_NAME,
                                               file_mode="0755", identity_reference=identity)]
        if settings.ffmpeg_sha256:
            environment = [batch_models.EnvironmentSetting(name="FFMPEG_SHA256", value=settings.ffmpeg_sha256)]
    return batch_models.BatchStartTask(
        command_line=START_TASK_COMMAND,
        resource_files=resources,
        environment_settings=environment,
        user_identity=admin,
        max_task_retry_count=START_TASK_MAX_RETRIES,
        wait_for_success=True,  # no task lands on a node before ffmpeg is there
    )


def build_pool(settings: Settings) -> batch_models.BatchPoolCreateOptions:
    image = settings.image
    return batch_models.BatchPoolCreateOptions(
        id=settings.pool_id,
        display_name="mp4-to-mp3 ffmpeg pool",
        vm_size=settings.vm_size,
        virtual_machine_configuration=batch_models.VirtualMachineConfiguration(
            image_reference=batch_models.BatchVmImageReference(
                publisher=image.publisher, offer=image.offer, sku=image.sku, version=image.version),
            node_agent_sku_id=settings.node_agent_sku_id,
        ),
        enable_auto_scale=True,
        auto_scale_formula=autoscale_formula(settings.task_slots_per_node, settings.max_nodes,
                                             settings.node_priority),
        auto_scale_evaluation_interval=timedelta(minutes=settings.autoscale_interval_minutes),
        task_slots_per_node=settings.task_slots_per_node,
        task_scheduling_policy=batch_models.BatchTaskSchedulingPolicy(node_fill_type="pack"),
        start_task=start_task(settings),
    )


def build_job(settings: Settings, job_id: str) -> batch_models.BatchJobCreateOptions:
    """One period's job (shared/job_periods.py)."""
    return batch_models.BatchJobCreateOptions(
        id=job_id,
        display_name="mp4-to-mp3 conversions",
        pool_info=batch_models.BatchPoolInfo(pool_id=settings.pool_id),
        # It stays open when it momentarily has no tasks (late uploads of its period still come), and
        # one failed file does not end it; the timer deletes it once drained (shared/job_lifecycle.py).
        all_tasks_complete_mode="noaction",
        task_failure_mode="noaction",
        constraints=batch_models.BatchJobConstraints(max_task_retry_count=settings.task_max_retries),
    )
