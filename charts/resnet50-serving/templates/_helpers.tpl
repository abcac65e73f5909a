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
{{- if not $img.repository }}
{{- /* requiredValues first: its message says where the repository comes from */}}
{{- include "resnet50-serving.requiredValues" .context }}
{{- fail (printf "%s.repository is empty: set it to the image's repository (--set %s.repository=...)" .what .what) }}
{{- end }}
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
requiredValues: every listed path (`a.b.c`, `\.` for a dot inside a key) must hold a non-empty value; the
failure names the path and where its value comes from. The example overlays list what only the user's account
can give (left empty there, passed with --set by the install), so a forgotten one stops the install instead of
deploying a placeholder.
*/}}
{{- define "resnet50-serving.requiredValues" -}}
{{- $missing := list }}
{{- range $path, $from := .Values.requiredValues }}
{{- $node := $.Values }}
{{- $found := true }}
{{- range $part := splitList "." (replace "\\." "\x1f" $path) }}
{{- $key := replace "\x1f" "." $part }}
{{- if and $found (kindIs "map" $node) (hasKey $node $key) }}
{{- $node = index $node $key }}
{{- else }}
{{- $found = false }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "requiredValues lists %s, which is not a value of this chart: fix the path (\\. for a dot inside a key) or remove it" $path) }}
{{- end }}
{{- if empty $node }}
{{- $missing = append $missing (printf "  --set %s=...  (%s)" $path $from) }}
{{- end }}
{{- end }}
{{- with $missing }}
{{- fail (printf "required values are empty (requiredValues lists them: only your account can give them). Pass each one:\n%s" (join "\n" .)) }}
{{- end }}
{{- end }}

{{/*
The startup probe's budget in seconds: initialDelaySeconds + failureThreshold x periodSeconds.
*/}}
{{- define "resnet50-serving.startupBudgetSeconds" -}}
{{- $s := .Values.probes.startup }}
{{- add (int $s.initialDelaySeconds) (mul (int $s.failureThreshold) (int $s.periodSeconds)) }}
{{- end }}

{{/*
The Deployment's progressDeadlineSeconds: rollingUpdate.progressDeadlineSeconds, or when it is empty the startup
probe's budget plus rollingUpdate.progressMarginSeconds (image pull and the init container's fetch come first).
Why: a rollout past the deadline reads as failed (ProgressDeadlineExceeded) and the operator rolls it back, so the
deadline must outlast the slowest healthy pod start.
*/}}
{{- define "resnet50-serving.progressDeadlineSeconds" -}}
{{- $r := .Values.rollingUpdate }}
{{- if ne (toString $r.progressDeadlineSeconds) "" }}{{ int $r.progressDeadlineSeconds }}{{ else }}{{ add (include "resnet50-serving.startupBudgetSeconds" . | int) (int $r.progressMarginSeconds) }}{{ end }}
{{- end }}

{{/*
The group/version/Kind of each CRD-defined object the chart can render. The chart renders one only where the
cluster serves it (.Capabilities.APIVersions; `helm template` knows only what --api-versions passes): `helm
install` fails on a kind the cluster lacks. NOTES.txt names each one skipped.
*/}}
{{- define "resnet50-serving.crdAPIs" -}}
{{- toJson (dict
  "ServiceMonitor" "monitoring.coreos.com/v1/ServiceMonitor"
  "PrometheusRule" "monitoring.coreos.com/v1/PrometheusRule"
  "ScaledObject" "keda.sh/v1alpha1/ScaledObject"
  "KopfPeering" "kopf.dev/v1/KopfPeering"
  "ModelDeployment" "resnet-serving.io/v1alpha1/ModelDeployment") }}
{{- end }}

{{/*
"true" when the cluster serves the CRD-defined kind named by .kind (a key of crdAPIs), else "".
Usage: include "resnet50-serving.served" (dict "kind" "ServiceMonitor" "context" $)
*/}}
{{- define "resnet50-serving.served" -}}
{{- $api := index (include "resnet50-serving.crdAPIs" . | fromJson) .kind }}
{{- if .context.Capabilities.APIVersions.Has $api }}true{{ end }}
{{- end }}

{{/*
"true" when the cluster serves the custom metrics API (custom.metrics.k8s.io/v1beta1, registered by the Prometheus
adapter), which the HPA's Pods metrics (autoscaling.customMetric, autoscaling.saturation) are read from; else "".
*/}}
{{- define "resnet50-serving.customMetricsAPI" -}}
custom.metrics.k8s.io/v1beta1
{{- end }}

{{- define "resnet50-serving.customMetricsServed" -}}
{{- if .Capabilities.APIVersions.Has (include "resnet50-serving.customMetricsAPI" .) }}true{{ end }}
{{- end }}

{{/*
Whether an object of this chart sets the serving Deployment's replica count: the HPA, or the KEDA ScaledObject
where the cluster serves it. Without one the Deployment renders its own replicas.
*/}}
{{- define "resnet50-serving.scaled" -}}
{{- $a := .Values.autoscaling }}
{{- if and $a.enabled (or (eq $a.engine "hpa") (include "resnet50-serving.served" (dict "kind" "ScaledObject" "context" .))) }}true{{ end }}
{{- end }}

{{/*
Cross-field checks the schema cannot express. Each fails with a message that names the values to change.
Included once, from the Deployment.
*/}}
{{- define "resnet50-serving.validate" -}}
{{- include "resnet50-serving.requiredValues" . }}
{{- $v := .Values }}
{{- $budget := int (include "resnet50-serving.startupBudgetSeconds" .) }}
{{- if and (ne (toString $v.rollingUpdate.progressDeadlineSeconds) "") (le (int $v.rollingUpdate.progressDeadlineSeconds) $budget) }}
{{- fail (printf "rollingUpdate.progressDeadlineSeconds (%d) must exceed the startup probe's budget (%d s: probes.startup.initialDelaySeconds + failureThreshold x periodSeconds), or a slow but healthy rollout is reported failed and rolled back; leave it empty to derive it" (int $v.rollingUpdate.progressDeadlineSeconds) $budget) }}
{{- end }}
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
{{- if and $v.ingress.enabled (eq $v.ingress.scheme "internet-facing") (eq $v.ingress.auth.type "none") (not $v.ingress.allowUnauthenticatedInternet) }}
{{- fail "ingress.scheme internet-facing with ingress.auth.type none serves the model to the internet with no authentication (a WAF ACL is not one). Keep ingress.scheme internal and let clients in through the front door's private route (API Gateway with Cognito and an API key, infra/README.md \"Private route to the EKS path\"), or set ingress.auth, or say that you accept it with ingress.allowUnauthenticatedInternet=true" }}
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
The settings that decide what a prediction is (request limits, top-k, precision), for every container that runs the
model: the serving container and the batch Job's, so an image is judged and classified the same way by both.
*/}}
{{- define "resnet50-serving.inferenceEnv" -}}
{{- $v := .Values -}}
- name: RESNET_SERVING_MAX_IMAGE_BYTES
  value: {{ $v.requestLimits.maxImageBytes | int64 | quote }}
- name: RESNET_SERVING_MAX_IMAGE_PIXELS
  value: {{ $v.requestLimits.maxImagePixels | int64 | quote }}
- name: RESNET_SERVING_MAX_IMAGES_PER_REQUEST
  value: {{ $v.requestLimits.maxImagesPerRequest | int64 | quote }}
- name: RESNET_SERVING_DEFAULT_TOPK
  value: {{ $v.requestLimits.defaultTopk | int64 | quote }}
- name: RESNET_SERVING_MAX_TOPK
  value: {{ $v.requestLimits.maxTopk | int64 | quote }}
- name: RESNET_SERVING_AMP
  value: {{ $v.torchserve.amp | quote }}
{{- end }}

{{/*
The "model answers" probe: a real prediction on a tiny built-in image, exit 0 iff it returns 200.
*/}}
{{- define "resnet50-serving.probeCommand" -}}
["resnet-serving", "probe", "--url", "http://127.0.0.1:8080", "--timeout", {{ .Values.probes.predictTimeoutSeconds | quote }}]
{{- end }}
