{{/* Names and labels shared by every resource of the chart. */}}
{{- define "ketenmonitor.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ketenmonitor.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "ketenmonitor.labels" -}}
{{ include "ketenmonitor.selectorLabels" . }}
{{ include "ketenmonitor.commonLabels" . }}
{{- end -}}

{{- define "ketenmonitor.commonLabels" -}}
app.kubernetes.io/part-of: ketenmonitor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ketenmonitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ketenmonitor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the workers' Kafka password: given, or the one Strimzi writes for the user. */}}
{{- define "ketenmonitor.kafkaSecret" -}}
{{- if .Values.kafka.existingSecret -}}
{{- .Values.kafka.existingSecret -}}
{{- else if and .Values.strimzi.enabled (has .Values.strimzi.namespace (list "" .Release.Namespace)) -}}
{{- .Values.kafka.username -}}
{{- end -}}
{{- end -}}

{{/* Partitions the most loaded worker owns with `n` workers: ceil(partitions / n). */}}
{{- define "ketenmonitor.partitionsPerWorker" -}}
{{- $p := int64 .partitions -}}
{{- $n := max 1 (int64 .workers) -}}
{{- div (add $p (sub $n 1)) $n -}}
{{- end -}}

{{/*
Resources from the measured figures (values.sizing, docs/sizing.md), unless .Values.resources is
set: memory = idle RSS + cases held x RSS bytes per case, plus headroom; the request for the
worker's share of the partitions, the limit for its share when one worker is gone.
*/}}
{{- define "ketenmonitor.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else -}}
{{- $s := .Values.sizing -}}
{{- $p := int64 .Values.kafka.partitions -}}
{{- $workers := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int64 -}}
{{- $casesPerPartition := div (add (int64 $s.casesInState) (sub $p 1)) $p -}}
{{- $share := include "ketenmonitor.partitionsPerWorker" (dict "partitions" $p "workers" $workers) | int64 -}}
{{- $takeover := include "ketenmonitor.partitionsPerWorker" (dict "partitions" $p "workers" (max 1 (sub $workers 1))) | int64 -}}
{{- $perCase := int64 $s.rssBytesPerCase -}}
{{- $headroom := add 100 (int64 $s.headroomPercent) -}}
{{- $requestMiB := div (mul (add (mul (int64 $s.idleRssMiB) 1048576) (mul $casesPerPartition $share $perCase)) $headroom) (mul 100 1048576) -}}
{{- $limitMiB := div (mul (add (mul (int64 $s.idleRssMiB) 1048576) (mul $casesPerPartition $takeover $perCase)) $headroom) (mul 100 1048576) -}}
requests:
  cpu: {{ $s.cpuRequest }}
  memory: {{ $requestMiB }}Mi
limits:
  {{- with $s.cpuLimit }}
  cpu: {{ . }}
  {{- end }}
  memory: {{ $limitMiB }}Mi
{{- end -}}
{{- end -}}
