// Deploys exactly the grants of infra/roles.json (the one table the docs and tests read), each
// at the narrowest scope the table names: the host's storage account, the media account, one
// container, the ledger table, one queue, the Batch account or Application Insights.

param storageAccountName string
param hostStorageAccountName string
param ledgerTableName string
param batchAccountName string
param appInsightsName string
@description('Logical container keys used in roles.json (input, output, logs) -> container names.')
param containerNames object
@description('Principal ids by the names roles.json uses (app, pool, deployer); empty = that principal is not part of this deployment.')
param principalIds object
@description('Principal types by the same names (ServicePrincipal for managed identities, User or ServicePrincipal for the deployer).')
param principalTypes object

var table = loadJsonContent('../roles.json')
// Module parameters are known when this nested deployment starts, so they may drive loops and names.
var grants = filter(table.grants, g => !empty(principalIds[g.principal]))
var accountGrants = filter(grants, g => g.scope == 'storageAccount')
var hostGrants = filter(grants, g => g.scope == 'hostStorage')
var tableGrants = filter(grants, g => g.scope == 'table:ledger')
var queueGrants = filter(grants, g => startsWith(g.scope, 'queue:'))
var containerGrants = filter(grants, g => startsWith(g.scope, 'container:'))
var batchGrants = filter(grants, g => g.scope == 'batchAccount')
var insightsGrants = filter(grants, g => g.scope == 'appInsights')

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource hostStorageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' existing = {
  name: '${storageAccountName}/default/${ledgerTableName}'
}

// The queues a grant names are created here (the blob extension would create the poison queue on first use,
// but a role assignment needs its scope to exist).
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for g in queueGrants: {
  name: '${storageAccountName}/default/${substring(g.scope, length('queue:'))}'
}]

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for g in containerGrants: {
  name: '${storageAccountName}/default/${containerNames[substring(g.scope, length('container:'))]}'
}]

resource batchAccount 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource accountAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in accountGrants: {
  name: guid(storageAccount.id, principalIds[g.principal], table.definitions[g.role].id)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource hostAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in hostGrants: {
  name: guid(hostStorageAccount.id, principalIds[g.principal], table.definitions[g.role].id)
  scope: hostStorageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource tableAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in tableGrants: {
  name: guid(ledgerTable.id, principalIds[g.principal], table.definitions[g.role].id)
  scope: ledgerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource queueAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (g, i) in queueGrants: {
  name: guid(queues[i].id, principalIds[g.principal], table.definitions[g.role].id)
  scope: queues[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource containerAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (g, i) in containerGrants: {
  name: guid(containers[i].id, principalIds[g.principal], table.definitions[g.role].id)
  scope: containers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource batchAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in batchGrants: {
  name: guid(batchAccount.id, principalIds[g.principal], table.definitions[g.role].id)
  scope: batchAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

resource insightsAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for g in insightsGrants: {
  name: guid(appInsights.id, principalIds[g.principal], table.definitions[g.role].id)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', table.definitions[g.role].id)
    principalId: principalIds[g.principal]
    principalType: principalTypes[g.principal]
    description: g.why
  }
}]

output grantCount int = length(grants)
