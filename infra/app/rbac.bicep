// Role assignments for exactly what the code does, each at the narrowest scope:
// - blob read/write/delete and user-delegation keys (SAS for Studio): Storage Blob Data Contributor
// - the host's poison queue: Storage Queue Data Contributor
// - the ledger tables: Storage Table Data Contributor
// - the Studio keys: Key Vault Secrets User on the vault
// - Retrain.* events: EventGrid Data Sender on the custom topic
// - telemetry with Entra auth: Monitoring Metrics Publisher on the component
// - dead-lettering by the system topic: Storage Blob Data Contributor on the dead-letter container only
// - an Azure ML workspace's identity (when there is one): Storage Blob Data Reader, so a job reads a landed file by
//   identity
// The host's own storage (AzureWebJobsStorage__*: leases, timer status, keys, the deployment package) runs on the same
// Blob Data Contributor. Microsoft's identity-based-connection table names Storage Blob Data Owner; Owner adds only
// POSIX ACL management and the superuser action on hierarchical-namespace (Data Lake Gen2) accounts, and this
// account has no hierarchical namespace, so Contributor is everything the host and the app use here.
param principalId string
param storageAccountName string
param keyVaultName string
param topicName string
param systemTopicPrincipalId string
param deadLetterContainerName string
param applicationInsightsName string
@description('Whoever runs azd (optional): given blob data access to drop training files.')
param userPrincipalId string = ''
@description('Its principal type: azd signs in as a User or, in CI, as a ServicePrincipal (ARM refuses a mismatch).')
param userPrincipalType string = 'User'
@description('The Azure ML workspace\'s managed identity (optional): reads the app\'s blobs.')
param workspacePrincipalId string = ''

var roles = {
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${deadLetterContainerName}'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource topic 'Microsoft.EventGrid/topics@2024-06-01-preview' existing = {
  name: topicName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource blobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.queueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.tableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource eventsSend 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, roles.eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, principalId, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource deadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, systemTopicPrincipalId, roles.blobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userBlobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(account.id, userPrincipalId, roles.blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource workspaceBlobRead 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(workspacePrincipalId)) {
  name: guid(account.id, workspacePrincipalId, roles.blobDataReader)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataReader)
    principalId: workspacePrincipalId
    principalType: 'ServicePrincipal'
  }
}
