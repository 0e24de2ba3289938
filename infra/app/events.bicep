// Event Grid: a system topic on the storage account (the blob triggers' source; its subscriptions are made after
// the code is deployed, by scripts/subscribe-blob-events.sh) and the custom topic the app publishes Retrain.*
// CloudEvents to, with local auth disabled (the app sends with its managed identity: EventGrid Data Sender).
param systemTopicName string
param topicName string
param storageAccountName string
param location string
param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: systemTopicName
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' } // dead-letters undeliverable events to storage without a key
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource topic 'Microsoft.EventGrid/topics@2024-06-01-preview' = {
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
output topicName string = topic.name
output topicEndpoint string = topic.properties.endpoint
