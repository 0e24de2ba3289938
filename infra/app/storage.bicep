// The storage account: shared keys off (every caller uses Entra ID), TLS 1.2, no public blob access. The app's
// containers, the ledger's tables and the host's poison queue are created here, so the app never needs the right
// to create them.
param name string
param location string
param tags object = {}
param tablePrefix string
param deploymentContainerName string

// The containers the blob triggers watch (training-data/{name}, models/{name}.ilearner) and where refused files go.
var appContainers = { data: 'training-data', models: 'models', rejected: 'rejected' }
var deadLetterContainerName = 'eventgrid-deadletter'
var ledgerTables = [ '${tablePrefix}Runs', '${tablePrefix}Deployments', '${tablePrefix}Outbox' ]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [ appContainers.data, appContainers.models, appContainers.rejected, deploymentContainerName, deadLetterContainerName ]: {
  parent: blobService
  name: container
  properties: { publicAccess: 'None' }
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in ledgerTables: {
  parent: tableService
  name: table
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'webjobs-blobtrigger-poison'
}

// Where the host puts a poison message the app's blob_poisoned trigger itself failed on; reconcile drains it.
resource poisonAgainQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'webjobs-blobtrigger-poison-poison'
}

// The work queue (the fanout_work trigger reads it: queued fan-outs, job events, later tries of poisoned blobs) and where the host puts a message
// that failed maxDequeueCount times.
resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'retrain-work'
}

resource workPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'retrain-work-poison'
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output appContainers object = appContainers
output deploymentContainerName string = deploymentContainerName
output deadLetterContainerName string = deadLetterContainerName
