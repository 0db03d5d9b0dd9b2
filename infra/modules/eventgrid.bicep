// Event Grid system topic for the storage account. Its subscription (BlobCreated on the input
// container, delivered to the blob trigger's webhook) is created after the code is deployed by
// infra/scripts/post-deploy.sh: the webhook URL carries the host's blobs_extension system key,
// which exists only once the host has started with the Event Grid-sourced blob trigger.

param name string
param location string
param tags object
param storageAccountId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
