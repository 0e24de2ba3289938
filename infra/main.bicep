// Everything the retraining app needs in Azure, for `azd up`: a Flex Consumption function app with a user-assigned
// managed identity, its storage account (no shared keys), the ledger tables, Key Vault for the Studio (classic)
// keys, an Event Grid system topic for the blob triggers and a custom topic for the Retrain.* events, Application
// Insights, and - when AZURE_ML_WORKSPACE_ID names an existing Azure Machine Learning workspace - the app's role on
// that workspace, the workspace's read access to the app's data and an Event Grid system topic on the workspace.
// The Event Grid subscriptions to the app's triggers are made after the code is deployed (the extension keys exist
// only then) by scripts/postdeploy.py, the azd postdeploy hook.
//
// Every setting the app reads comes from ONE place, main.parameters.json: `appSettings` (text settings, each from the
// azd environment value of the same name) and the JSON-valued settings (RETRAIN_GATE, RETRAIN_TARGETS, ...), each
// an object/array parameter azd parses. An unset value is left out, so the code's own default applies.
// tests/infra/test_settings.py derives the settings from the code and fails naming any that infra/ cannot set.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to name every resource.')
param environmentName string

@minLength(1)
@description('Primary location for all resources: a region with Flex Consumption (scripts/preprovision.py checks).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of whoever runs azd (azd sets it): given blob data access to drop training files.')
param principalId string = ''

@description('Its type (azd sets AZURE_PRINCIPAL_TYPE: User, or ServicePrincipal when signed in as one).')
@allowed([ 'User', 'ServicePrincipal', 'Group' ])
param principalType string = 'User'

@description('The team\'s text settings (RETRAIN_*), from the azd environment; empty = the code\'s default.')
param appSettings object = {}

@description('RETRAIN_GATE: the gate over several metrics (JSON object); {} = the single-metric settings.')
param retrainGate object = {}

@description('RETRAIN_TARGETS: the targets (JSON array: Azure ML and/or Studio classic); [] = the flat settings.')
param retrainTargets array = []

@description('RETRAIN_BES_GLOBAL_PARAMETERS: GlobalParameters of a Studio (classic) BES job (JSON object).')
param besGlobalParameters object = {}

@description('RETRAIN_SMOKE_ROW: the row scored to verify a deployment (JSON object); {} = first row of the data.')
param smokeRow object = {}

@secure()
@description('RETRAIN_BES_KEY: the Studio (classic) training web service\'s API key (to Key Vault; empty = none).')
param besKey string = ''

@secure()
@description('RETRAIN_MANAGEMENT_KEY: the Studio (classic) workspace authorization token (to Key Vault).')
param managementKey string = ''

@description('ARM id of an existing Azure Machine Learning workspace the app trains and deploys in; empty = none.')
param azureMlWorkspaceId string = ''

@description('The app\'s role on that workspace: "builtin" = AzureML Data Scientist, "custom" = the narrower role in app/azureml.bicep.')
@allowed([ 'builtin', 'custom' ])
param azureMlRole string = 'builtin'

@description('Object id of the workspace\'s managed identity when it has no system-assigned one (empty = the system one).')
param azureMlWorkspacePrincipalId string = ''

@description('Name of the Event Grid system topic on the workspace (in its resource group); set it to the existing one if the workspace has one (a source takes one system topic).')
param azureMlSystemTopicName string = ''

@description('Flex Consumption: most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory of each instance in MB.')
@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

@description('Key Vault purge protection (cannot be turned off again; `azd down --purge` then cannot purge the vault).')
param keyVaultPurgeProtection bool = false

@description('The Entra app registration (client id) of the operators\' app role; empty: operator actions need only a function key')
param operatorAuthClientId string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var tablePrefix = 'retrain'
// The workspace's subscription and resource group (a placeholder id when there is none: the module is skipped).
var azureMlEnabled = !empty(azureMlWorkspaceId)
var azureMlIdParts = split(azureMlEnabled ? azureMlWorkspaceId : '/subscriptions/${subscription().subscriptionId}/resourceGroups/none/providers/Microsoft.MachineLearningServices/workspaces/none', '/')

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
    purgeProtection: keyVaultPurgeProtection
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

module azureml 'app/azureml.bicep' = if (azureMlEnabled) {
  name: 'azureml-${resourceToken}'
  scope: resourceGroup(azureMlIdParts[2], azureMlIdParts[4])
  params: {
    workspaceName: last(azureMlIdParts)
    appPrincipalId: identity.outputs.principalId
    role: azureMlRole
    roleSuffix: '${environmentName}-${resourceToken}'
    systemTopicName: empty(azureMlSystemTopicName) ? 'evgt-aml-${resourceToken}' : azureMlSystemTopicName
    tags: tags
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
    userPrincipalType: principalType
    workspacePrincipalId: azureMlEnabled ? (empty(azureMlWorkspacePrincipalId) ? azureml.outputs.workspacePrincipalId : azureMlWorkspacePrincipalId) : ''
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
    containers: storage.outputs.appContainers
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    tablePrefix: tablePrefix
    appSettings: appSettings
    jsonSettings: {
      RETRAIN_GATE: retrainGate
      RETRAIN_TARGETS: retrainTargets
      RETRAIN_BES_GLOBAL_PARAMETERS: besGlobalParameters
      RETRAIN_SMOKE_ROW: smokeRow
    }
    secretUris: {
      RETRAIN_BES_KEY: vault.outputs.besKeySecretUri
      RETRAIN_MANAGEMENT_KEY: vault.outputs.managementKeySecretUri
    }
    eventTopicEndpoint: events.outputs.topicEndpoint
    operatorAuthClientId: operatorAuthClientId
  }
  // The Key Vault references and the identity-based host storage resolve only once the roles exist: without this the
  // site could start first and read the literal `@Microsoft.KeyVault(...)` (which shared/settings.py refuses).
  dependsOn: [ rbac ]
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
output AZURE_ML_EVENTGRID_SYSTEM_TOPIC_ID string = azureMlEnabled ? azureml.outputs.systemTopicId : ''
