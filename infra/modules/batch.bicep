// Batch account. Pool allocation mode BatchService: Batch owns the VMs and bills them per node;
// the cores come from the Batch account's own quotas (dedicated and low-priority/Spot, per
// region) — new accounts may have 0 low-priority cores; see docs/deploy.md.
// Only Entra ID auth on the data plane: the app authenticates with its managed identity, so the
// account's shared keys are switched off rather than left lying around.
// Pools are not declared here: the app creates its pool lazily from shared/pool_spec.py (one
// source for the pool's shape), and infra/scripts/post-deploy.sh attaches the pool identity.

param name string
param location string
param tags object

resource account 'Microsoft.Batch/batchAccounts@2024-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    poolAllocationMode: 'BatchService'
    allowedAuthenticationModes: [
      'AAD'
    ]
    publicNetworkAccess: 'Enabled'
  }
}

output name string = account.name
output id string = account.id
// accountEndpoint is a host name (e.g. <name>.<region>.batch.azure.com, or
// .batch.chinacloudapi.cn in Azure China); the SDK wants a URL.
output url string = 'https://${account.properties.accountEndpoint}'
