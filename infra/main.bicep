// Everything the retraining app needs in Azure, for `azd up`: a Flex Consumption function app with a user-assigned
// managed identity, its storage account (no shared keys), the ledger tables, Key Vault for the Studio (classic)
// keys, an Event Grid system topic for the blob triggers and a custom topic for the Retrain.* events, and
// Application Insights. The blob-trigger subscriptions are created after the code is deployed (the blobs_extension
// key exists only then) by scripts/subscribe-blob-events.sh, the azd postdeploy hook.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name every resource.')
param environmentName string

@minLength(1)
@description('Primary location for all resources.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the person running azd: given blob data access to drop training files (optional).')
param principalId string = ''

@description('The training web service\'s BES URL (ApiLocation or .../jobs?api-version=2.0).')
param besUrl string

@secure()
@description('The training web service\'s API key (stored in Key Vault, never in an app setting).')
param besKey string

@description('The predictive web service: https://management.azureml.net/workspaces/<ws>/webservices/<id>.')
param managementUrl string

@secure()
@description('The workspace authorization token for the management API (stored in Key Vault).')
param managementKey string

@description('The trained-model resource of the predictive web service, e.g. "Census Model [trained model]".')
param resourceName string

@description('Endpoints a retrained model goes to: "*" = every non-default endpoint, or a comma-separated list.')
param endpoints string = '*'

@description('Evaluation metric that gates a deployment, and its minimum.')
param gateMetric string = 'AUC'
param gateMinimum string = '0.7'

@description('"auto" deploys a model that passes the gate; "manual" waits for an operator\'s approval.')
@allowed([ 'auto', 'manual' ])
param approval string = 'auto'

@description('Flex Consumption: most instances the app scales out to (40-1000; text, so azd can set it).')
param maximumInstanceCount string = '100'
@description('Flex Consumption: memory of each instance in MB.')
@allowed([ '512', '2048', '4096' ])
param instanceMemoryMB string = '2048'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var tablePrefix = 'retrain'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-retrain-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    tablePrefix: tablePrefix
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    besKey: besKey
    managementKey: managementKey
  }
}

module events 'app/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    systemTopicName: 'evgt-blobs-${resourceToken}'
    topicName: 'evgt-retrain-${resourceToken}'
    storageAccountName: storage.outputs.name
    location: location
    tags: tags
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: 'func-retrain-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: int(maximumInstanceCount)
    instanceMemoryMB: int(instanceMemoryMB)
    tablePrefix: tablePrefix
    besUrl: besUrl
    besKeySecretUri: vault.outputs.besKeySecretUri
    managementUrl: managementUrl
    managementKeySecretUri: vault.outputs.managementKeySecretUri
    resourceName: resourceName
    endpoints: endpoints
    gateMetric: gateMetric
    gateMinimum: gateMinimum
    approval: approval
    eventTopicEndpoint: events.outputs.topicEndpoint
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    topicName: events.outputs.topicName
    systemTopicPrincipalId: events.outputs.systemTopicPrincipalId
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    userPrincipalId: principalId
  }
}

// What azd and the postdeploy hook use (no key, no connection string with a key).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output SERVICE_API_URL string = function.outputs.url
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.id
output EVENTGRID_SYSTEM_TOPIC_NAME string = events.outputs.systemTopicName
output EVENTGRID_DEADLETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output RETRAIN_EVENTGRID_ENDPOINT string = events.outputs.topicEndpoint
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
