// The media account: containers input, output, logs and the ledger table (and the completion events
// queue, modules/events.bicep). The Functions host's storage and the deployment package are in their own
// account (modules/host-storage.bicep), so the app's roles here can stay per container and per table.
// No shared keys: every client (function host, app code, Batch nodes, Event Grid) uses Entra ID
// or a user-delegation SAS, both of which keep working with allowSharedKeyAccess = false.

param name string
param location string
param tags object
@description('Containers to create: input, output, logs.')
param containerNames array
param ledgerTableName string
param logsContainerName string
param inputContainerName string
@minValue(1)
param logRetentionDays int
@description('Days an overwritten or deleted input version is kept: long enough for any queued task to read the version it was created for.')
@minValue(1)
param inputVersionRetentionDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Versioning pins each task to the input version it was created for (its resource file names the version
// id): an overwrite while the task waits cannot change what it converts.
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true
    // A deleted blob or container can be restored for a week: an operator's slip is not data loss.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in containerNames: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource ledger 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: ledgerTableName
}

// ffmpeg error logs are for diagnosis, not records: age them out (the ledger keeps the summary).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-task-logs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${logsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: logRetentionDays
                }
              }
            }
          }
        }
        {
          name: 'expire-previous-input-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${inputContainerName}/'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: inputVersionRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output id string = account.id
// Endpoints as the storage resource provider reports them: right for every cloud (Azure China's
// *.core.chinacloudapi.cn included) without assembling suffixes by hand. They end with '/'.
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
