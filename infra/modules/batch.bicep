// Batch account. Pool allocation mode BatchService: Batch owns the VMs and bills them per node; the
// cores come from the Batch account's own quotas (dedicated per VM family, and low-priority/Spot in
// total, per region) - new accounts may have few or none; the preflight hook (infra/scripts/preflight.sh)
// checks them, see docs/deploy.md.
// Only Entra ID auth on the data plane: the app authenticates with its managed identity, so the
// account's shared keys are switched off rather than left lying around.
// The pool is modules/pool.bicep, deployed after the pool identity's roles.

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
