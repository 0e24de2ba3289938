// The function app on the Flex Consumption plan (Python 3.11, scales to zero), running as the user-assigned
// managed identity: the deployment package, storage, Key Vault references and telemetry all go through it. Every
// setting shared/settings.py needs is here; no connection string with a key, the Studio keys only as Key Vault
// references.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param maximumInstanceCount int
param instanceMemoryMB int
param tablePrefix string
param besUrl string
param besKeySecretUri string
param managementUrl string
param managementKeySecretUri string
param resourceName string
param endpoints string
param gateMetric string
param gateMinimum string
param approval string
param eventTopicEndpoint string

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
      ftpsState: 'Disabled'
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

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage and the app's own storage: identity-based (no AzureWebJobsStorage connection string).
    AzureWebJobsStorage__accountName: account.name
    AzureWebJobsStorage__blobServiceUri: account.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: account.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: account.properties.primaryEndpoints.table
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AZURE_CLIENT_ID: identityClientId
    // Telemetry: the connection string names the component (no key is used: local auth is disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // Studio (classic): URLs here, keys in Key Vault.
    RETRAIN_BES_URL: besUrl
    RETRAIN_BES_KEY: '@Microsoft.KeyVault(SecretUri=${besKeySecretUri})'
    RETRAIN_MANAGEMENT_URL: managementUrl
    RETRAIN_MANAGEMENT_KEY: '@Microsoft.KeyVault(SecretUri=${managementKeySecretUri})'
    RETRAIN_RESOURCE_NAME: resourceName
    RETRAIN_ENDPOINTS: endpoints
    RETRAIN_TABLE_PREFIX: tablePrefix
    RETRAIN_GATE_METRIC: gateMetric
    RETRAIN_GATE_MINIMUM: gateMinimum
    RETRAIN_APPROVAL: approval
    // The reconcile timer's schedule (its binding reads %RETRAIN_RECONCILE_SCHEDULE%: without it nothing indexes).
    RETRAIN_RECONCILE_SCHEDULE: '0 */5 * * * *'
    // Events: published with the managed identity (the topic has local auth disabled, so no key).
    RETRAIN_EVENTGRID_ENDPOINT: eventTopicEndpoint
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
