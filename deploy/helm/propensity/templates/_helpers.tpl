{{/* Names, labels, and what every container shares. */}}

{{- define "propensity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "propensity.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "propensity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "propensity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "propensity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "propensity.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: propensity
{{- end -}}

{{- define "propensity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "propensity.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* <repository>/<target>:<tag>; call with (dict "root" $ "target" "cpu-worker") */}}
{{- define "propensity.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .target $tag -}}
{{- end -}}

{{/* The task queue a train pool's workers poll (workflows/constants.ts): the historical name for pool cpu. */}}
{{- define "propensity.trainQueue" -}}
{{- if eq . "cpu" -}}propensity-train{{- else -}}{{- printf "propensity-train-%s" . -}}{{- end -}}
{{- end -}}

{{- define "propensity.cpuQueue" -}}propensity-cpu{{- end -}}

{{/* Fails the render with a message naming the value, for settings that would only fail at run time. */}}
{{- define "propensity.validate" -}}
{{- if not .Values.temporal.address -}}
{{- fail "temporal.address is required: the host:port of your Temporal frontend" -}}
{{- end -}}
{{- if and .Values.temporal.tls.secretName .Values.temporal.apiKey.secretName -}}
{{- fail "set one of temporal.tls.secretName (mTLS) and temporal.apiKey.secretName (API key), not both" -}}
{{- end -}}
{{- if not .Values.database.secretName -}}
{{- fail "database.secretName is required: a Secret with DATABASE_URL and DATABASE_URL_SOURCE" -}}
{{- end -}}
{{- if not .Values.s3.bucket -}}
{{- fail "s3.bucket is required" -}}
{{- end -}}
{{- end -}}

{{/* S3_ENDPOINT: the configured one, else AWS S3 in the region (the app refuses to guess an endpoint without keys). */}}
{{- define "propensity.s3Endpoint" -}}
{{- .Values.s3.endpoint | default (printf "https://s3.%s.amazonaws.com" .Values.s3.region) -}}
{{- end -}}

{{- define "propensity.s3ForcePathStyle" -}}
{{- if ne (toString .Values.s3.forcePathStyle) "" -}}
{{- toString .Values.s3.forcePathStyle -}}
{{- else if .Values.s3.endpoint -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* Environment of every container (infra/env.ts); call with (dict "root" $ "grace" <seconds or "">). */}}
{{- define "propensity.env" -}}
{{- $v := .root.Values -}}
- name: TEMPORAL_ADDRESS
  value: {{ $v.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ $v.temporal.namespace | quote }}
{{- if $v.temporal.tls.secretName }}
- name: TEMPORAL_TLS_CERT_PATH
  value: /etc/propensity/temporal-tls/{{ $v.temporal.tls.certKey }}
- name: TEMPORAL_TLS_KEY_PATH
  value: /etc/propensity/temporal-tls/{{ $v.temporal.tls.keyKey }}
{{- end }}
{{- if $v.temporal.apiKey.secretName }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef: { name: {{ $v.temporal.apiKey.secretName | quote }}, key: {{ $v.temporal.apiKey.key | quote }} }
{{- end }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef: { name: {{ $v.database.secretName | quote }}, key: {{ $v.database.urlKey | quote }} }
- name: DATABASE_URL_SOURCE
  valueFrom:
    secretKeyRef: { name: {{ $v.database.secretName | quote }}, key: {{ $v.database.sourceUrlKey | quote }} }
- name: PROPENSITY_SOURCE_STATEMENT_TIMEOUT_S
  value: {{ $v.database.sourceStatementTimeoutSeconds | quote }}
- name: S3_ENDPOINT
  value: {{ include "propensity.s3Endpoint" .root | quote }}
- name: S3_FORCE_PATH_STYLE
  value: {{ include "propensity.s3ForcePathStyle" .root | quote }}
- name: S3_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: S3_REGION
  value: {{ $v.s3.region | quote }}
{{- if $v.s3.credentials.secretName }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: { name: {{ $v.s3.credentials.secretName | quote }}, key: {{ $v.s3.credentials.accessKeyIdKey | quote }} }
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: { name: {{ $v.s3.credentials.secretName | quote }}, key: {{ $v.s3.credentials.secretAccessKeyKey | quote }} }
{{- end }}
{{- if ne (toString .grace) "" }}
- name: PROPENSITY_SHUTDOWN_GRACE_SECONDS
  value: {{ .grace | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "propensity.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  mountPath: /etc/propensity/temporal-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "propensity.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  secret:
    secretName: {{ .Values.temporal.tls.secretName | quote }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* A worker Deployment; call with (dict "root" $ "component" … "pool" <pool values> "poolName" … "queue" …). */}}
{{- define "propensity.workerDeployment" -}}
{{- $root := .root -}}
{{- $p := .pool -}}
{{- $name := printf "%s-%s" (include "propensity.fullname" $root) .component | trunc 63 | trimSuffix "-" -}}
{{- if le (int $p.terminationGracePeriodSeconds) (int $p.shutdownGraceSeconds) -}}
{{- fail (printf "%s: terminationGracePeriodSeconds (%v) must be longer than shutdownGraceSeconds (%v), or Kubernetes kills the worker before its activities have drained" .component $p.terminationGracePeriodSeconds $p.shutdownGraceSeconds) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "propensity.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with .poolName }}
    propensity.io/pool: {{ . }}
    {{- end }}
  annotations:
    propensity.io/task-queue: {{ .queue }}
spec:
  {{- if not (and $root.Values.keda.enabled $p.autoscaling) }}
  replicas: {{ $p.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $p.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "propensity.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
  template:
    metadata:
      labels:
        {{- include "propensity.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- with .poolName }}
        propensity.io/pool: {{ . }}
        {{- end }}
      {{- with $p.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "propensity.serviceAccountName" $root }}
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $p.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: worker
          image: {{ include "propensity.image" (dict "root" $root "target" $p.image) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- include "propensity.env" (dict "root" $root "grace" $p.shutdownGraceSeconds) | nindent 12 }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $p.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "propensity.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "propensity.volumes" $root | nindent 8 }}
      {{- with $p.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $p.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $p.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* A KEDA ScaledObject scaling one worker Deployment on its task queue's backlog. */}}
{{- define "propensity.scaledObject" -}}
{{- $root := .root -}}
{{- $a := .pool.autoscaling -}}
{{- $name := printf "%s-%s" (include "propensity.fullname" $root) .component | trunc 63 | trimSuffix "-" -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s: autoscaling.minReplicas (%v) is above maxReplicas (%v)" .component $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "propensity.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $root.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $a.cooldownPeriod }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: {{ $a.scaleDownStabilizationSeconds }}
          policies:
            - { type: Pods, value: 1, periodSeconds: 60 }
  triggers:
    - type: temporal
      metadata:
        endpoint: {{ $root.Values.temporal.address | quote }}
        namespace: {{ $root.Values.temporal.namespace | quote }}
        taskQueue: {{ .queue | quote }}
        queueTypes: {{ join "," $a.queueTypes | quote }}
        targetQueueSize: {{ .targetQueueSize | quote }}
        activationTargetQueueSize: "0"
      {{- if or $root.Values.temporal.tls.secretName $root.Values.temporal.apiKey.secretName }}
      authenticationRef:
        name: {{ include "propensity.fullname" $root }}-temporal
      {{- end }}
    {{- range $a.cron }}
    - type: cron
      metadata:
        timezone: {{ .timezone | default "UTC" | quote }}
        start: {{ .start | quote }}
        end: {{ .end | quote }}
        desiredReplicas: {{ .desiredReplicas | default 1 | quote }}
    {{- end }}
{{- end -}}
