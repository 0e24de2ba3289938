// Key Vault in RBAC mode holding the Studio (classic) keys; the app settings reference them
// (@Microsoft.KeyVault(SecretUri=...), no version: the newest version is read, so a rotation needs no redeploy).
param name string
param location string
param tags object = {}

@secure()
param besKey string
@secure()
param managementKey string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource besKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'retrain-bes-key'
  properties: { value: besKey, contentType: 'Studio (classic) training web service API key' }
}

resource managementKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'retrain-management-key'
  properties: { value: managementKey, contentType: 'Studio (classic) workspace authorization token' }
}

output name string = vault.name
output besKeySecretUri string = besKeySecret.properties.secretUri
output managementKeySecretUri string = managementKeySecret.properties.secretUri
