// Key Vault in RBAC mode holding the Studio (classic) keys when they are given; the app settings reference them
// (@Microsoft.KeyVault(SecretUri=...), no version: the newest version is read, so a rotation needs no redeploy).
// An Azure ML target needs no key: then the vault stays empty.
param name string
param location string
param tags object = {}

@secure()
param besKey string
@secure()
param managementKey string
@description('Purge protection: once on it cannot be turned off, and `azd down --purge` cannot purge the vault.')
param purgeProtection bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: purgeProtection ? 90 : 7
    // ARM refuses `false` here: the property is left out unless protection is wanted.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

resource besKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(besKey)) {
  parent: vault
  name: 'retrain-bes-key'
  properties: { value: besKey, contentType: 'Studio (classic) training web service API key' }
}

resource managementKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(managementKey)) {
  parent: vault
  name: 'retrain-management-key'
  properties: { value: managementKey, contentType: 'Studio (classic) workspace authorization token' }
}

output name string = vault.name
output besKeySecretUri string = empty(besKey) ? '' : besKeySecret.properties.secretUri
output managementKeySecretUri string = empty(managementKey) ? '' : managementKeySecret.properties.secretUri
