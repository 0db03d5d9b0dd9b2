// The function app: Flex Consumption (FC1, Linux, Python 3.11) by default; a Linux App Service
// plan ("Dedicated") for clouds or regions without Flex Consumption (check with
// `az functionapp list-flexconsumption-locations`; see docs/deploy.md, sovereign clouds).
// Identity only: the host storage, the deployment package and App Insights all use the app's
// user-assigned managed identity; no keys or connection strings in app settings.

param name string
param location string
param tags object
param planName string
@allowed([
  'FlexConsumption'
  'Dedicated'
])
param hostingPlan string
@description('App Service plan SKU for hostingPlan = Dedicated (it bills while idle).')
param dedicatedSku string
param identityId string
param storageBlobEndpoint string
param deploymentContainerName string
@description('App settings from main.bicep: the app\'s own settings plus identity-based connections.')
param appSettings object
@minValue(40)
param maximumInstanceCount int
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int
param serviceName string

var isFlex = hostingPlan == 'FlexConsumption'
var pythonVersion = '3.11'

// Settings the Dedicated plan needs and Flex Consumption rejects (Flex takes the runtime from
// functionAppConfig and always builds remotely).
var dedicatedOnlySettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'linux'
  sku: isFlex ? {
    tier: 'FlexConsumption'
    name: 'FC1'
  } : {
    name: dedicatedSku
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      linuxFxVersion: isFlex ? null : 'Python|${pythonVersion}'
      // The timer must keep ticking on a Dedicated plan; Flex scales on its own.
      alwaysOn: !isFlex
    }
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    } : null
  }
}

// Deployment uses the app's identity (azd / One Deploy): user-name/password publishing is switched off.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: isFlex ? appSettings : union(appSettings, dedicatedOnlySettings)
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
