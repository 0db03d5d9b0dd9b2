// The Batch pool, declared here rather than left to the app: only the management plane can give a pool a
// managed identity. Its code-defined parts (start task, autoscale formula text, fill type, image -> node
// agent) come from infra/pool.json, generated from shared/pool_spec.py (infra/batch_pool.py); its settings
// are this module's parameters, the same values main.bicep gives the app. tests/infra/test_pool.py checks
// that this resource equals the pool the app itself would create, for several parameter sets.
// Re-deploying (a second `azd up`) puts the same body again: a no-op for Batch unless a parameter changed.

param batchAccountName string
param poolId string
param vmSize string
@description('Marketplace image publisher:offer:sku:version.')
param image string
@description('Node agent SKU; empty: the one pool.json lists for the image\'s publisher:offer.')
param nodeAgentSkuId string
param taskSlotsPerNode int
param maxNodes int
param useSpot bool
param autoscaleIntervalMinutes int
@description('Pinned static ffmpeg for the start task (empty: apt-get) and its sha256.')
param ffmpegBinaryUrl string
param ffmpegSha256 string
@description('Resource id of the pool\'s user-assigned identity; empty: none (nodes get SAS URLs).')
param poolIdentityId string

var spec = loadJsonContent('../pool.json')
var imageParts = split(image, ':')
var imageKey = toLower('${imageParts[0]}:${imageParts[1]}')
var effectiveNodeAgentSkuId = empty(nodeAgentSkuId) ? spec.nodeAgentSkus[imageKey] : nodeAgentSkuId
var formulaTemplate = useSpot ? spec.autoScaleFormula.spot : spec.autoScaleFormula.dedicated
var formula = replace(replace(formulaTemplate, '{{maxNodes}}', string(maxNodes)), '{{slotsPerNode}}', string(taskSlotsPerNode))
var ffmpegFile = union(spec.ffmpegResourceFile, empty(poolIdentityId) ? {
  httpUrl: ffmpegBinaryUrl
} : {
  httpUrl: ffmpegBinaryUrl
  identityReference: {
    resourceId: poolIdentityId
  }
})
var ffmpegStartTask = empty(ffmpegBinaryUrl) ? {} : {
  resourceFiles: [
    ffmpegFile
  ]
}
var ffmpegPin = empty(ffmpegSha256) ? {} : {
  environmentSettings: [
    {
      name: spec.ffmpegShaVariable
      value: ffmpegSha256
    }
  ]
}

resource account 'Microsoft.Batch/batchAccounts@2024-07-01' existing = {
  name: batchAccountName
}

resource pool 'Microsoft.Batch/batchAccounts/pools@2024-07-01' = {
  parent: account
  name: poolId
  identity: empty(poolIdentityId) ? {
    type: 'None'
  } : {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${poolIdentityId}': {}
    }
  }
  properties: {
    displayName: spec.displayName
    vmSize: vmSize
    deploymentConfiguration: {
      virtualMachineConfiguration: {
        imageReference: {
          publisher: imageParts[0]
          offer: imageParts[1]
          sku: imageParts[2]
          version: imageParts[3]
        }
        nodeAgentSkuId: effectiveNodeAgentSkuId
      }
    }
    scaleSettings: {
      autoScale: {
        formula: formula
        evaluationInterval: 'PT${autoscaleIntervalMinutes}M'
      }
    }
    taskSlotsPerNode: taskSlotsPerNode
    taskSchedulingPolicy: {
      nodeFillType: spec.nodeFillType
    }
    startTask: union(spec.startTask, ffmpegStartTask, ffmpegPin)
    // Nothing may reach a node from outside: SSH (the only listener on a Linux node) gets a NAT pool whose
    // network security group denies every source. Nodes still get a Batch-managed public IP for their
    // outbound traffic (Batch node management, storage, apt); NoPublicIPAddresses would need a virtual
    // network with a NAT gateway, which bills while idle (docs/deploy.md).
    networkConfiguration: {
      endpointConfiguration: {
        inboundNatPools: [
          {
            name: 'ssh-denied'
            protocol: 'TCP'
            backendPort: 22
            frontendPortRangeStart: 15000
            frontendPortRangeEnd: 15099
            networkSecurityGroupRules: [
              {
                priority: 150
                access: 'Deny'
                sourceAddressPrefix: '*'
              }
            ]
          }
        ]
      }
    }
  }
}

output name string = pool.name
