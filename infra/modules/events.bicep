// Completion events (issue 15, docs/events.md): the storage queue and/or the Event Grid custom topic the
// app publishes one CloudEvents 1.0 event to per final ledger row, and the app identity's right to send
// to each - nothing more (no queue read/delete, no topic management).

param location string
param tags object
param storageAccountName string
@description('queue, eventgrid, both or none (the app setting EVENTS_SINK).')
@allowed([
  'queue'
  'eventgrid'
  'both'
  'none'
])
param sink string
param queueName string
param topicName string
@description('The function app\'s name: the events\' CloudEvents source is /mp4tomp3/<app name>.')
param appName string
@description('The app identity (principal id) that publishes.')
param appPrincipalId string

var withQueue = sink == 'queue' || sink == 'both'
var withTopic = sink == 'eventgrid' || sink == 'both'
// Azure built-in roles.
var queueMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender

resource queue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = if (withQueue) {
  name: '${storageAccountName}/default/${queueName}'
}

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withQueue) {
  name: guid(storageAccountName, queueName, appPrincipalId, queueMessageSender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueMessageSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'The app sends completion events (CloudEvents JSON) to this queue only.'
  }
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = if (withTopic) {
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withTopic) {
  name: guid(topicName, appPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'The app publishes completion events to this topic only (local auth is off).'
  }
}

output queueName string = withQueue ? queueName : ''
output topicEndpoint string = withTopic ? topic.properties.endpoint : ''
output source string = '/mp4tomp3/${appName}'
