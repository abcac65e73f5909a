{{/*
Expand the name of the chart.
*/}}
{{- define "resnet50-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "resnet50-serving.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "resnet50-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "resnet50-serving.labels" -}}
helm.sh/chart: {{ include "resnet50-serving.chart" . }}
{{ include "resnet50-serving.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: resnet-serving
{{- end }}

{{/*
Selector labels
*/}}
{{- define "resnet50-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "resnet50-serving.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the serving pods (the Deployment, Service, PDB, HPA target and NetworkPolicy select
these). The component label keeps the test and operator pods out of them.
*/}}
{{- define "resnet50-serving.serverSelectorLabels" -}}
{{ include "resnet50-serving.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Selector labels of the operator pods.
*/}}
{{- define "resnet50-serving.operatorSelectorLabels" -}}
{{ include "resnet50-serving.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "resnet50-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "resnet50-serving.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from an image block (repository, tag, digest): pinned by digest when one is given,
else by tag (default: the chart's appVersion). "latest" is refused.
Usage: include "resnet50-serving.image" (dict "image" .Values.image "context" $ "what" "image")
*/}}
{{- define "resnet50-serving.image" -}}
{{- $img := .image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- $tag := $img.tag | default .context.Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail (printf "%s.tag must not be \"latest\": pin an exact version, or set %s.digest" .what .what) }}
{{- end }}
{{- printf "%s:%s" $img.repository $tag }}
{{- end }}
{{- end }}

{{/*
The serving pods' minimum replica count: the HPA's minReplicas when it is enabled, else replicaCount.
*/}}
{{- define "resnet50-serving.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
The saturation target per pod (requests in flight + queued): autoscaling.saturation.targetPerPod, or when it is
empty the most requests the workers hold at once (workers x batchSize): beyond that, requests only queue.
*/}}
{{- define "resnet50-serving.saturationTarget" -}}
{{- $t := .Values.autoscaling.saturation.targetPerPod }}
{{- if eq (toString $t) "" }}{{ mul (int .Values.torchserve.workers) (int .Values.torchserve.batchSize) }}{{ else }}{{ $t }}{{ end }}
{{- end }}

{{/*
The HPA that scales the serving pods: the chart's own, or the one KEDA creates for the ScaledObject.
*/}}
{{- define "resnet50-serving.hpaName" -}}
{{- if eq .Values.autoscaling.engine "keda" }}keda-hpa-{{ end }}{{ include "resnet50-serving.fullname" . }}
{{- end }}

{{/*
The saturation of the whole release (requests in flight + queued, every pod), for KEDA's prometheus trigger:
KEDA's HPA divides it by the pod count (AverageValue). An absent series counts as 0, so no scrape means no load.
*/}}
{{- define "resnet50-serving.saturationQuery" -}}
{{- $s := .Values.autoscaling.saturation }}
{{- $sel := printf "namespace=%q, service=%q" .Release.Namespace (printf "%s-metrics" (include "resnet50-serving.fullname" .)) }}
{{- range $i, $m := list "resnet_serving_in_flight_requests" "resnet_serving_queued_requests" }}{{ if $i }} + {{ end }}(sum(avg_over_time({{ $m }}{ {{- $sel -}} }[{{ $s.window }}])) or vector(0)){{ end }}
{{- end }}

{{/*
The Prometheus adapter rule (one list item) serving autoscaling.saturation.metricName per pod: in flight (every
version the pod serves) plus queued in TorchServe, averaged over the window.
*/}}
{{- define "resnet50-serving.adapterRule" -}}
{{- $s := .Values.autoscaling.saturation -}}
- seriesQuery: 'resnet_serving_in_flight_requests{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: "^resnet_serving_in_flight_requests$"
    as: {{ $s.metricName | quote }}
  metricsQuery: >-
    sum by (<<.GroupBy>>) (avg_over_time(<<.Series>>{<<.LabelMatchers>>}[{{ $s.window }}]))
    + sum by (<<.GroupBy>>) (avg_over_time(resnet_serving_queued_requests{<<.LabelMatchers>>}[{{ $s.window }}]))
{{- end }}

{{/*
Cross-field checks the schema cannot express. Each fails with a message that names the values to change.
Included once, from the Deployment.
*/}}
{{- define "resnet50-serving.validate" -}}
{{- $v := .Values }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $v.autoscaling.enabled (eq $v.autoscaling.engine "keda") $v.autoscaling.customMetric.enabled }}
{{- fail "autoscaling.customMetric is a metric of the custom metrics API (the Prometheus adapter), which KEDA's HPA does not read: with autoscaling.engine=keda set autoscaling.customMetric.enabled=false and use autoscaling.saturation (a prometheus trigger)" }}
{{- end }}
{{- if and $v.autoscaling.enabled $v.autoscaling.saturation.enabled (not $v.metrics.serviceMonitor.enabled) }}
{{- fail "autoscaling.saturation.enabled needs metrics.serviceMonitor.enabled=true: the saturation series reach Prometheus through the ServiceMonitor" }}
{{- end }}
{{- $grace := int $v.terminationGracePeriodSeconds }}
{{- $needed := add (int $v.lifecycle.preStopSleepSeconds) (int $v.lifecycle.longestRequestSeconds) }}
{{- if le $grace (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than lifecycle.preStopSleepSeconds + lifecycle.longestRequestSeconds (%d), or in-flight requests are cut off" $grace (int $needed)) }}
{{- end }}
{{- range $name := list "startup" "readiness" }}
{{- $p := index $v.probes $name }}
{{- if le (int $p.timeoutSeconds) (int $v.probes.predictTimeoutSeconds) }}
{{- fail (printf "probes.%s.timeoutSeconds (%d) must be longer than probes.predictTimeoutSeconds (%d)" $name (int $p.timeoutSeconds) (int $v.probes.predictTimeoutSeconds)) }}
{{- end }}
{{- end }}
{{- if gt (int $v.requestLimits.defaultTopk) (int $v.requestLimits.maxTopk) }}
{{- fail (printf "requestLimits.defaultTopk (%d) must not exceed requestLimits.maxTopk (%d)" (int $v.requestLimits.defaultTopk) (int $v.requestLimits.maxTopk)) }}
{{- end }}
{{- if $v.podDisruptionBudget.enabled }}
{{- $pdb := $v.podDisruptionBudget }}
{{- $hasMax := ne (toString $pdb.maxUnavailable) "" }}
{{- $hasMin := ne (toString $pdb.minAvailable) "" }}
{{- if eq $hasMax $hasMin }}
{{- fail "podDisruptionBudget: set exactly one of maxUnavailable and minAvailable (the other to \"\")" }}
{{- end }}
{{- $min := int (include "resnet50-serving.minReplicas" .) }}
{{- range $key := list "maxUnavailable" "minAvailable" }}
{{- $n := index $pdb $key }}
{{- if and (ne (toString $n) "") (not (kindIs "string" $n)) }}
{{- if lt (int $n) 1 }}
{{- fail (printf "podDisruptionBudget.%s must be at least 1" $key) }}
{{- end }}
{{- if ge (int $n) $min }}
{{- fail (printf "podDisruptionBudget.%s (%d) must be below the minimum replica count (%d): a budget must keep one pod up and still let one be evicted. Raise replicaCount / autoscaling.minReplicas or disable the PDB" $key (int $n) $min) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.ingress.enabled (eq $v.ingress.scheme "internet-facing") (not $v.ingress.https.enabled) }}
{{- fail "ingress.scheme internet-facing needs ingress.https.enabled=true (and ingress.https.certificateArn or ingress.hosts): the model is never served in plain HTTP on the internet" }}
{{- end }}
{{- if and $v.ingress.enabled (ne $v.ingress.auth.type "none") (not $v.ingress.https.enabled) }}
{{- fail (printf "ingress.auth.type %s needs ingress.https.enabled=true: the ALB authenticates on HTTPS listeners only" $v.ingress.auth.type) }}
{{- end }}
{{- if and $v.ingress.enabled $v.ingress.https.enabled (not $v.ingress.https.certificateArn) (not $v.ingress.hosts) }}
{{- fail "ingress.https.enabled needs ingress.https.certificateArn, or ingress.hosts for the controller to discover a certificate" }}
{{- end }}
{{- if and $v.ingress.enabled (eq $v.ingress.auth.type "cognito") (not (and $v.ingress.auth.cognito.userPoolArn $v.ingress.auth.cognito.userPoolClientId $v.ingress.auth.cognito.userPoolDomain)) }}
{{- fail "ingress.auth.type cognito needs ingress.auth.cognito.userPoolArn, userPoolClientId and userPoolDomain" }}
{{- end }}
{{- if and $v.ingress.enabled (eq $v.ingress.auth.type "oidc") (not (and $v.ingress.auth.oidc.issuer $v.ingress.auth.oidc.authorizationEndpoint $v.ingress.auth.oidc.tokenEndpoint $v.ingress.auth.oidc.userInfoEndpoint $v.ingress.auth.oidc.secretName)) }}
{{- fail "ingress.auth.type oidc needs ingress.auth.oidc.issuer, authorizationEndpoint, tokenEndpoint, userInfoEndpoint and secretName" }}
{{- end }}
{{- end }}

{{/*
AWS settings for the containers that talk to the model store (init container, operator).
*/}}
{{- define "resnet50-serving.awsEnv" -}}
{{- with .Values.model.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.model.awsRegion }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The "model answers" probe: a real prediction on a tiny built-in image, exit 0 iff it returns 200.
*/}}
{{- define "resnet50-serving.probeCommand" -}}
["resnet-serving", "probe", "--url", "http://127.0.0.1:8080", "--timeout", {{ .Values.probes.predictTimeoutSeconds | quote }}]
{{- end }}
