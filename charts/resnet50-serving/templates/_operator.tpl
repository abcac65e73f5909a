{{/*
Names of the operator's objects: the Deployment, its ServiceAccount, Role and RoleBinding, and its KopfPeering
object all share "<fullname>-operator" (the ServiceAccount unless operator.serviceAccount.name is set).
*/}}
{{- define "resnet50-serving.operatorFullname" -}}
{{- printf "%s-operator" (include "resnet50-serving.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "resnet50-serving.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "resnet50-serving.operatorFullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Deployments the operator may read and patch: this release's serving Deployment plus operator.extraDeployments.
*/}}
{{- define "resnet50-serving.operatorTargets" -}}
{{- toJson (uniq (prepend .Values.operator.extraDeployments (include "resnet50-serving.fullname" .))) }}
{{- end }}
