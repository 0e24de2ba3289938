// The function app on the Flex Consumption plan (Python 3.11, scales to zero), running as the user-assigned
// managed identity: the deployment package, storage, Key Vault references and telemetry all go through it.
//
// Its settings are written whole on every provision (a setting added in the portal does not survive one), composed
// of, later ones winning: the defaults a binding needs, the team's text settings, the team's JSON settings (as
// compact JSON), the Key Vault references of the secrets that were given, and what the platform wiring sets (storage,
// identity, telemetry, the containers and tables this template created, the events topic). Empty values are left
// out, so the code's own default applies.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
@description('The app\'s containers as storage.bicep created them: { data, models, rejected }.')
param containers object
param applicationInsightsName string
param maximumInstanceCount int
param instanceMemoryMB int
param tablePrefix string
@description('RETRAIN_* text settings by name (main.parameters.json).')
param appSettings object
@description('JSON-valued settings by name (objects/arrays; written as compact JSON).')
param jsonSettings object
@description('Secret settings by name -> their Key Vault secret URI (empty: not given).')
param secretUris object
param eventTopicEndpoint string

@description('The Entra app registration (client id) whose app role RETRAIN_OPERATOR_ROLE operator actions need; empty: any function key opens them (RETRAIN_OPERATOR_AUTH=key)')
param operatorAuthClientId string = ''

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'retrain' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
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
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// The reconcile timer's binding reads %RETRAIN_RECONCILE_SCHEDULE%: without the setting the host indexes nothing.
var bindingDefaults = { RETRAIN_RECONCILE_SCHEDULE: '0 */5 * * * *' }
var teamSettings = toObject(filter(items(appSettings), s => !empty(s.value)), s => s.key, s => string(s.value))
var teamJsonSettings = toObject(filter(items(jsonSettings), s => !empty(s.value)), s => s.key, s => string(s.value))
var secretSettings = toObject(filter(items(secretUris), s => !empty(s.value)), s => s.key, s => '@Microsoft.KeyVault(SecretUri=${s.value})')
var platformSettings = {
  // Host storage and the app's own storage: identity-based (no AzureWebJobsStorage connection string).
  AzureWebJobsStorage__accountName: account.name
  AzureWebJobsStorage__blobServiceUri: account.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: account.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: account.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  // Telemetry: the connection string names the component (no key is used: local auth is disabled). host.json's
  // telemetryMode OpenTelemetry + PYTHON_ENABLE_OPENTELEMETRY: the worker exports the app's telemetry itself
  // (shared/telemetry.py) and tells the host so, and the host stops forwarding the same logs (sent once, not twice).
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  // What this template created: the containers the triggers watch and the ledger's tables.
  RETRAIN_DATA_CONTAINER: containers.data
  RETRAIN_MODELS_CONTAINER: containers.models
  RETRAIN_REJECTED_CONTAINER: containers.rejected
  RETRAIN_TABLE_PREFIX: tablePrefix
  // The instances a target's call ceiling (RETRAIN_TARGET_CALLS_PER_SECOND) is shared by: the plan's scale-out limit.
  RETRAIN_MAX_INSTANCES: string(maximumInstanceCount)
  // Events: published with the managed identity (the topic has local auth disabled, so no key).
  RETRAIN_EVENTGRID_ENDPOINT: eventTopicEndpoint
  // Operator actions: an Entra principal with the operator app role when App Service Authentication is configured.
  RETRAIN_OPERATOR_AUTH: empty(operatorAuthClientId) ? 'key' : 'entra'
}

resource siteSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(bindingDefaults, teamSettings, teamJsonSettings, secretSettings, platformSettings)
}

// App Service Authentication with Entra ID: it vouches for callers (X-MS-CLIENT-PRINCIPAL, stripped from client
// requests) without requiring sign-in - uploads keep working with a function key - and the app requires the operator
// role for operator actions (blueprints/principal.py).
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(operatorAuthClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: operatorAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${operatorAuthClientId}'
          ]
        }
      }
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
