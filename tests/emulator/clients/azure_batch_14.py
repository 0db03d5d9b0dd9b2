"""Drive the emulator with the msrest-based azure-batch 14.x SDK (api-version 2024-07-01.20.0), which the az CLI
and older tools use. Run by test_older_clients.py in a separate interpreter that has azure-batch 14.x installed.

    python azure_batch_14.py URL ACCOUNT KEY
"""
import sys, time
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as bm
url, name, key = sys.argv[1:4]
c = BatchServiceClient(SharedKeyCredentials(name, key), batch_url=url)
c.pool.add(bm.PoolAddParameter(id="oldpool", vm_size="standard_d2s_v3",
    virtual_machine_configuration=bm.VirtualMachineConfiguration(image_reference=bm.ImageReference(publisher="canonical", offer="ubuntu", sku="22_04-lts", version="latest"), node_agent_sku_id="batch.node.ubuntu 22.04"),
    target_dedicated_nodes=1))
print("pool exists", c.pool.exists("oldpool"))
c.job.add(bm.JobAddParameter(id="oldjob", pool_info=bm.PoolInformation(pool_id="oldpool")))
c.task.add_collection("oldjob", [bm.TaskAddParameter(id=f"t{i}", command_line="/bin/sh -c 'echo hi'") for i in range(5)])
c.task.add("oldjob", bm.TaskAddParameter(id="single", command_line="/bin/true"))
for _ in range(100):
    ts = list(c.task.list("oldjob"))
    if all(t.state == bm.TaskState.completed for t in ts): break
    time.sleep(0.1)
print("states", sorted({t.state.value for t in ts}), len(ts))
page = list(c.task.list("oldjob", task_list_options=bm.TaskListOptions(filter="state eq 'completed'", select="id,state", max_results=2)))
print("paged filtered", len(page))
print("counts", c.job.get_task_counts("oldjob").task_counts)
try:
    c.task.add("oldjob", bm.TaskAddParameter(id="single", command_line="/bin/true"))
except bm.BatchErrorException as e:
    print("error code", e.error.code)
c.pool.resize("oldpool", bm.PoolResizeParameter(target_dedicated_nodes=0))
print("resize ok", c.pool.get("oldpool").allocation_state.value)
