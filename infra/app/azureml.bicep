// An existing Azure Machine Learning workspace the app trains and deploys in (deployed to the workspace's resource
// group): the app's identity gets a role on the workspace, and an Event Grid system topic on the workspace carries
// its job events (RunCompleted, RunStatusChanged) to the app's `azureml_job_event` function - that subscription is
// made by scripts/postdeploy.py, once the function and its key exist.
//
// The role: "builtin" = AzureML Data Scientist (f6c7c914-8db3-469d-8ca1-694a8461e59e), Microsoft's documented role
// for submitting jobs and deploying models; it also lets the app delete any asset of the workspace. "custom" = the
// role below, exactly what the app does (jobs, models, online endpoints and their deployments, read access to what
// a job references) - narrower, but its action list could not be proved against a real workspace here (no
// subscription); see docs/deploy.md.
param workspaceName string
param appPrincipalId string
@allowed([ 'builtin', 'custom' ])
param role string
@description('Makes the custom role\'s name unique in the tenant (role names are tenant-wide).')
param roleSuffix string
param systemTopicName string
param tags object = {}

var dataScientist = 'f6c7c914-8db3-469d-8ca1-694a8461e59e'
var ml = 'Microsoft.MachineLearningServices/workspaces'
var customActions = [
  '${ml}/read'
  '${ml}/jobs/read'
  '${ml}/jobs/write'
  '${ml}/jobs/cancel/action'
  '${ml}/models/read'
  '${ml}/models/write'
  '${ml}/models/versions/read'
  '${ml}/models/versions/write'
  '${ml}/onlineEndpoints/read'
  '${ml}/onlineEndpoints/write'
  '${ml}/onlineEndpoints/score/action'
  '${ml}/onlineEndpoints/deployments/read'
  '${ml}/onlineEndpoints/deployments/write'
  '${ml}/onlineEndpoints/deployments/delete'
  '${ml}/onlineEndpoints/deployments/getLogs/action'
  // What a job spec references: its environment, compute, component, data and datastore.
  '${ml}/environments/read'
  '${ml}/environments/versions/read'
  '${ml}/computes/read'
  '${ml}/components/read'
  '${ml}/components/versions/read'
  '${ml}/data/read'
  '${ml}/data/versions/read'
  '${ml}/datastores/read'
]

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource customRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (role == 'custom') {
  name: guid(resourceGroup().id, workspaceName, roleSuffix, 'retrain-azureml-operator')
  properties: {
    roleName: 'Retrain app Azure ML operator (${roleSuffix})'
    description: 'What the retraining function app does in one Azure ML workspace: jobs, models, online endpoints and deployments.'
    type: 'CustomRole'
    permissions: [
      {
        actions: customActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [ resourceGroup().id ]
  }
}

resource appRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, role)
  scope: workspace
  properties: {
    roleDefinitionId: (role == 'custom') ? customRole.id : subscriptionResourceId('Microsoft.Authorization/roleDefinitions', dataScientist)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: systemTopicName
  location: workspace.location
  tags: tags
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output workspacePrincipalId string = workspace.identity.principalId
output systemTopicId string = systemTopic.id
