// mp4-to-mp3 on Azure: an MP4 lands in the input container -> Event Grid -> the function's blob
// trigger adds a Batch task -> the MP3 lands in the output container; a timer reconciles task
// states into the ledger table and parks the pool at zero nodes.
// Deploy with `azd up` (azure.yaml); see docs/deploy.md. Roles: infra/roles.json.
targetScope = 'subscription'

// ---------------------------------------------------------------- environment
@minLength(1)
@maxLength(64)
@description('azd environment name; seeds the names of all resources.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer Flex Consumption (or use hostingPlan = Dedicated) and have Batch core quota for poolVmSize.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person (or CI principal) running the deployment; gets upload/read access to the media containers and the ledger. Empty: none.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

param resourceGroupName string = ''

// ---------------------------------------------------------------- hosting
@allowed([
  'FlexConsumption'
  'Dedicated'
])
@description('FlexConsumption (FC1, scales to zero). Dedicated: a Linux App Service plan for clouds/regions without Flex Consumption; it bills while idle.')
param hostingPlan string = 'FlexConsumption'

@description('App Service plan SKU when hostingPlan = Dedicated.')
param dedicatedSku string = 'B1'

@minValue(40)
@maxValue(1000)
param functionMaximumInstances int = 40

// ---------------------------------------------------------------- storage names
param inputContainerName string = 'input'
param outputContainerName string = 'output'
param logsContainerName string = 'logs'
param ledgerTableName string = 'ledger'
@minValue(1)
@description('Days the ffmpeg logs of failed tasks are kept in the logs container.')
param logRetentionDays int = 30

// ---------------------------------------------------------------- Batch pool
@allowed([
  'poolIdentity'
  'userDelegationSas'
])
@description('How Batch nodes reach storage: the pool\'s own managed identity (no secret travels with a task), or short-lived user-delegation SAS URLs minted by the app.')
param nodeStorageAccess string = 'poolIdentity'

param batchPoolId string = 'ffmpeg-pool'
param batchJobId string = 'ffmpeg-jobs'

@description('VM size of the pool nodes: one with a local temporary disk (the "d" sizes), where Batch puts task working directories. The Batch account needs core quota for its family (dedicated or low-priority). Change poolTaskSlotsPerNode with it.')
param poolVmSize string = 'Standard_D2ds_v5'

@minValue(1)
@maxValue(1000)
param poolMaxNodes int = 4

@description('Spot (Batch low-priority) nodes: much cheaper, can be preempted; new Batch accounts often have 0 low-priority cores.')
param useSpot bool = false

@description('Marketplace image publisher:offer:sku:version.')
param poolImage string = 'canonical:ubuntu-24_04-lts:server:latest'

@description('Node agent SKU for poolImage; empty: the app derives it for the Ubuntu images it knows.')
param poolNodeAgentSkuId string = ''

@description('Task slots per node: one per vCPU of poolVmSize (2 for Standard_D2ds_v5). The temporary disk must hold 2 x maxInputBytes per slot (the preflight checks it).')
@minValue(1)
@maxValue(256)
param poolTaskSlotsPerNode int = 2

@minValue(5)
param poolAutoscaleIntervalMinutes int = 5

@description('Optional pinned static ffmpeg for the start task (with nodeStorageAccess = poolIdentity a blob URL the pool identity can read); empty: apt-get.')
param ffmpegBinaryUrl string = ''
param ffmpegSha256 string = ''

@minValue(0)
@maxValue(9)
param mp3Quality int = 2
@description('Uploads larger than this many bytes are rejected with a clear ledger row: a node\'s temporary disk holds, per task slot, the input, its MP3 and a just-finished task\'s files (docs/deploy.md, "Disk per slot"). Default 10 GiB: Standard_D2ds_v5 has a 75 GiB temporary disk for 2 slots.')
param maxInputBytes string = '10737418240'
@minValue(0)
@maxValue(10)
param taskMaxRetries int = 1
@minValue(1)
param taskMaxWallClockMinutes int = 60
@minValue(15)
param nodeSasTtlMinutes int = 240

// ---------------------------------------------------------------- timer (shared/timer_settings.py)
@description('NCRONTAB schedule of the reconcile/scale timer.')
param timerSchedule string = '0 */1 * * * *'
@description('Seconds without active or running tasks before the pool is parked at zero nodes.')
param idleGraceSeconds int = 120
param autoscaleHandbackSeconds int = 300
param reconcileOverlapSeconds int = 120
@description('Seconds between missed-upload sweeps (and completed-task cleanup).')
param sweepIntervalSeconds int = 600
param sweepMinAgeSeconds int = 300
param completedTaskRetentionSeconds int = 3600
param statusHeartbeatSeconds int = 300
@description('Each period\'s uploads go to their own Batch job; a drained job is deleted whole once its period is past.')
@minValue(60)
param jobPeriodSeconds int = 3600
@description('Blobs per List Blobs page of the missed-upload sweep, and pages per tick.')
@minValue(1)
@maxValue(5000)
param sweepPageSize int = 5000
@minValue(1)
@maxValue(100)
param sweepPagesPerTick int = 2
@description('Wall-clock budget of one timer tick (maintenance stops where it is and resumes next tick).')
@minValue(5)
@maxValue(240)
param tickBudgetSeconds int = 120
@description('Reconcile stops listing changed tasks after this much of a tick and resumes next tick.')
@minValue(1)
@maxValue(240)
param reconcileBudgetSeconds int = 30
@description('Where completion events go (docs/events.md): a storage queue, an Event Grid custom topic, both or none.')
@allowed([
  'queue'
  'eventgrid'
  'both'
  'none'
])
param eventsSink string = 'both'
param eventsQueueName string = 'conversion-events'

// ---------------------------------------------------------------- cloud endpoints
// Empty = the values of the cloud the deployment runs in (environment()); set them only for a
// cloud whose values ARM does not report. Azure China: https://login.chinacloudapi.cn/ and
// https://batch.chinacloudapi.cn/. Storage and Batch endpoints need no parameter: they are read
// from the created resources (e.g. *.blob.core.chinacloudapi.cn, *.batch.chinacloudapi.cn).
@description('Entra ID authority host for DefaultAzureCredential (AZURE_AUTHORITY_HOST); empty: this cloud\'s.')
param authorityHost string = ''

@description('Entra ID resource of the Batch data plane (token scope <resource>/.default); empty: this cloud\'s.')
param batchAadResource string = ''

// ---------------------------------------------------------------- names
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var usePoolIdentity = nodeStorageAccess == 'poolIdentity'
var effectiveAuthorityHost = empty(authorityHost) ? environment().authentication.loginEndpoint : authorityHost
// environment().batch ends with '/', so the scope reads https://batch.core.windows.net//.default,
// the form azure-batch itself uses by default.
var effectiveBatchResource = empty(batchAadResource) ? environment().batch : batchAadResource
var functionAppName = 'func-${resourceToken}'
// Flex Consumption reads the app package from this container with the app's identity.
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var blobTriggerFunctionName = 'process_upload'
var eventGridTopicName = 'evgt-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module appIdentity 'modules/identity.bicep' = {
  name: 'app-identity'
  scope: rg
  params: {
    name: 'id-func-${resourceToken}'
    location: location
    tags: tags
  }
}

module poolIdentity 'modules/identity.bicep' = if (usePoolIdentity) {
  name: 'pool-identity'
  scope: rg
  params: {
    name: 'id-pool-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containerNames: [
      inputContainerName
      outputContainerName
      logsContainerName
    ]
    ledgerTableName: ledgerTableName
    logsContainerName: logsContainerName
    inputContainerName: inputContainerName
    logRetentionDays: logRetentionDays
  }
}

// The Functions host's own storage (keys, timer locks, blob receipts) and the deployment package, apart from
// the media: the app's roles on it cannot reach an upload, an MP3 or the ledger.
module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: 'sthost${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
  }
}

module batch 'modules/batch.bicep' = {
  name: 'batch'
  scope: rg
  params: {
    name: 'ba${resourceToken}'
    location: location
    tags: tags
  }
}

module pool 'modules/pool.bicep' = {
  name: 'batch-pool'
  scope: rg
  params: {
    batchAccountName: batch.outputs.name
    poolId: batchPoolId
    vmSize: poolVmSize
    image: poolImage
    nodeAgentSkuId: poolNodeAgentSkuId
    taskSlotsPerNode: poolTaskSlotsPerNode
    maxNodes: poolMaxNodes
    useSpot: useSpot
    autoscaleIntervalMinutes: poolAutoscaleIntervalMinutes
    ffmpegBinaryUrl: ffmpegBinaryUrl
    ffmpegSha256: ffmpegSha256
    poolIdentityId: usePoolIdentity ? poolIdentity.outputs.id : ''
  }
  // Nodes read and write with the pool identity from the first upload on: its roles come first.
  dependsOn: [
    roles
  ]
}

// Every setting the app reads in Azure (shared/settings.py), and the identity-based host and
// trigger connections. tests/infra/test_app_settings.py checks this object against the code.
// Not here on purpose: BATCH_ACCOUNT_KEY and MEDIA_STORAGE (connection strings/keys: identity
// instead), STORAGE_AUDIENCE (the SDK default audience serves every cloud).
var appSettings = {
  // Functions host storage, identity-based. Service URIs rather than __accountName so that
  // sovereign clouds work (accountName implies the public cloud's endpoints).
  AzureWebJobsStorage__blobServiceUri: hostStorage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: hostStorage.outputs.queueEndpoint
  AzureWebJobsStorage__tableServiceUri: hostStorage.outputs.tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: appIdentity.outputs.clientId
  // The blob trigger's connection and the app's own storage clients: the media account.
  MEDIA_STORAGE__blobServiceUri: storage.outputs.blobEndpoint
  MEDIA_STORAGE__queueServiceUri: storage.outputs.queueEndpoint
  MEDIA_STORAGE__tableServiceUri: storage.outputs.tableEndpoint
  MEDIA_STORAGE__credential: 'managedidentity'
  MEDIA_STORAGE__clientId: appIdentity.outputs.clientId
  // Flex Consumption supports only the Event Grid source for blob triggers.
  BLOB_TRIGGER_SOURCE: 'EventGrid'
  INPUT_CONTAINER: inputContainerName
  OUTPUT_CONTAINER: outputContainerName
  LOGS_CONTAINER: logsContainerName
  LEDGER_TABLE: ledgerTableName
  BATCH_ACCOUNT_URL: batch.outputs.url
  BATCH_ACCOUNT_NAME: batch.outputs.name
  BATCH_TOKEN_SCOPE: '${effectiveBatchResource}/.default'
  AZURE_AUTHORITY_HOST: effectiveAuthorityHost
  BATCH_POOL_ID: batchPoolId
  BATCH_JOB_ID: batchJobId
  POOL_VM_SIZE: poolVmSize
  POOL_IMAGE: poolImage
  POOL_NODE_AGENT_SKU_ID: poolNodeAgentSkuId
  POOL_NODE_PRIORITY: useSpot ? 'spot' : 'dedicated'
  POOL_MAX_NODES: string(poolMaxNodes)
  POOL_TASK_SLOTS_PER_NODE: string(poolTaskSlotsPerNode)
  POOL_AUTOSCALE_INTERVAL_MINUTES: string(poolAutoscaleIntervalMinutes)
  POOL_IDENTITY_RESOURCE_ID: usePoolIdentity ? poolIdentity.outputs.id : ''
  FFMPEG_BINARY_URL: ffmpegBinaryUrl
  FFMPEG_SHA256: ffmpegSha256
  MP3_QUALITY: string(mp3Quality)
  MAX_INPUT_BYTES: maxInputBytes
  TASK_MAX_RETRIES: string(taskMaxRetries)
  TASK_MAX_WALL_CLOCK_MINUTES: string(taskMaxWallClockMinutes)
  NODE_SAS_TTL_MINUTES: string(nodeSasTtlMinutes)
  TIMER_SCHEDULE: timerSchedule
  IDLE_GRACE_SECONDS: string(idleGraceSeconds)
  AUTOSCALE_HANDBACK_SECONDS: string(autoscaleHandbackSeconds)
  RECONCILE_OVERLAP_SECONDS: string(reconcileOverlapSeconds)
  SWEEP_INTERVAL_SECONDS: string(sweepIntervalSeconds)
  SWEEP_MIN_AGE_SECONDS: string(sweepMinAgeSeconds)
  COMPLETED_TASK_RETENTION_SECONDS: string(completedTaskRetentionSeconds)
  STATUS_HEARTBEAT_SECONDS: string(statusHeartbeatSeconds)
  JOB_PERIOD_SECONDS: string(jobPeriodSeconds)
  SWEEP_PAGE_SIZE: string(sweepPageSize)
  SWEEP_PAGES_PER_TICK: string(sweepPagesPerTick)
  TICK_BUDGET_SECONDS: string(tickBudgetSeconds)
  RECONCILE_BUDGET_SECONDS: string(reconcileBudgetSeconds)
  EVENTS_SINK: eventsSink
  EVENTS_QUEUE: eventsQueueName
  EVENTS_TOPIC_ENDPOINT: events.outputs.topicEndpoint
  EVENTS_SOURCE: events.outputs.source
  // Telemetry with the app's identity (local auth is off on Application Insights).
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${appIdentity.outputs.clientId};Authorization=AAD'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planName: 'plan-${resourceToken}'
    hostingPlan: hostingPlan
    dedicatedSku: dedicatedSku
    identityId: appIdentity.outputs.id
    storageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    appSettings: appSettings
    maximumInstanceCount: functionMaximumInstances
    instanceMemoryMB: 2048
    serviceName: 'app'
  }
  // The host starts with these settings: its identity must already hold its roles.
  dependsOn: [
    roles
  ]
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'event-grid'
  scope: rg
  params: {
    name: eventGridTopicName
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
  }
}

module events 'modules/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    sink: eventsSink
    queueName: eventsQueueName
    topicName: 'evgt-events-${resourceToken}'
    appPrincipalId: appIdentity.outputs.principalId
    appName: functionAppName
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    ledgerTableName: ledgerTableName
    batchAccountName: batch.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    containerNames: {
      input: inputContainerName
      output: outputContainerName
      logs: logsContainerName
    }
    principalIds: {
      app: appIdentity.outputs.principalId
      pool: usePoolIdentity ? poolIdentity.outputs.principalId : ''
      deployer: principalId
    }
    principalTypes: {
      app: 'ServicePrincipal'
      pool: 'ServicePrincipal'
      deployer: principalType
    }
  }
}

// ---------------------------------------------------------------- outputs (azd env values, read by infra/scripts/post-deploy.sh)
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_BATCH_ACCOUNT_NAME string = batch.outputs.name
output AZURE_BATCH_ACCOUNT_URL string = batch.outputs.url
output BATCH_POOL_ID string = pool.outputs.name
output POOL_IDENTITY_RESOURCE_ID string = usePoolIdentity ? poolIdentity.outputs.id : ''
output INPUT_CONTAINER string = inputContainerName
output OUTPUT_CONTAINER string = outputContainerName
output LOGS_CONTAINER string = logsContainerName
output LEDGER_TABLE string = ledgerTableName
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output BLOB_TRIGGER_FUNCTION_NAME string = blobTriggerFunctionName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
