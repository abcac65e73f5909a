{{/*
The batch Job's name and ServiceAccount: "<fullname>-batch", run by the serving pods' ServiceAccount (its IRSA role
reads the model store) unless batch.serviceAccountName names another.
*/}}
{{- define "resnet50-serving.batchFullname" -}}
{{- printf "%s-batch" (include "resnet50-serving.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "resnet50-serving.batchServiceAccountName" -}}
{{- default (include "resnet50-serving.serviceAccountName" .) .Values.batch.serviceAccountName }}
{{- end }}

{{/*
The model store the Job reads: batch.store, or when it is empty the serving pods' model.store.
*/}}
{{- define "resnet50-serving.batchStore" -}}
{{- default .Values.model.store .Values.batch.store }}
{{- end }}

{{/*
What batch.enabled needs and the schema cannot say. Each fails naming the values to set: the Job must not start
pods that would only exit 2 (`batch run` fails fast on a missing input, output or model; the podFailurePolicy fails
the Job on that code).
*/}}
{{- define "resnet50-serving.batchValidate" -}}
{{- $b := .Values.batch }}
{{- $missing := list }}
{{- if not $b.input }}{{ $missing = append $missing "  --set batch.input=s3://BUCKET/PREFIX/  (the images to classify)" }}{{ end }}
{{- if not $b.output }}{{ $missing = append $missing "  --set batch.output=s3://BUCKET/PREFIX/  (where the results go: a new prefix for each run)" }}{{ end }}
{{- if not (include "resnet50-serving.batchStore" .) }}{{ $missing = append $missing "  --set batch.store=s3://BUCKET/PREFIX  (the model store; empty means model.store, which is empty too)" }}{{ end }}
{{- $version := toString $b.version }}
{{- if and (eq $version "") (not $b.channel) }}{{ $missing = append $missing "  --set batch.version=N  (the store version every shard runs; or --set batch.channel=NAME)" }}{{ end }}
{{- with $missing }}
{{- fail (printf "batch.enabled is true but required batch values are empty. Pass each one:\n%s" (join "\n" .)) }}
{{- end }}
{{- if and (ne $version "") $b.channel }}
{{- fail (printf "batch.version (%s) and batch.channel (%s) are both set: set one (`batch run` takes --version or --channel)" $version $b.channel) }}
{{- end }}
{{- if gt (int $b.maxFailedIndexes) (int $b.completions) }}
{{- fail (printf "batch.maxFailedIndexes (%d) must not exceed batch.completions (%d) (the API server refuses the Job)" (int $b.maxFailedIndexes) (int $b.completions)) }}
{{- end }}
{{- end }}
