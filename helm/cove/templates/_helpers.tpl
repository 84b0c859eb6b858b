{{/*
Names, labels, images and the environment shared by Cove's pods.
*/}}

{{- define "cove.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cove.fullname" -}}
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

{{/* Name of one component's objects: (dict "root" $ "component" "gateway"). */}}
{{- define "cove.componentName" -}}
{{- printf "%s-%s" (include "cove.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cove.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: fixed keys only. User labels (commonLabels) never enter a selector, because a
Deployment's selector is immutable and must keep matching its pods whatever labels are added.
*/}}
{{- define "cove.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cove.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "cove.componentSelectorLabels" -}}
{{ include "cove.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Labels of every object. The chart's own keys are written last so that commonLabels can add
labels but never replace the ones selectors rely on.
*/}}
{{- define "cove.labels" -}}
{{- $own := dict
  "helm.sh/chart" (include "cove.chart" .)
  "app.kubernetes.io/name" (include "cove.name" .)
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/version" (.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" .Release.Service
  "app.kubernetes.io/part-of" "cove" -}}
{{- $labels := dict -}}
{{- range $key, $value := .Values.commonLabels -}}
{{- if not (hasKey $own $key) -}}
{{- $_ := set $labels $key ($value | toString) -}}
{{- end -}}
{{- end -}}
{{- $labels = merge $own $labels -}}
{{- toYaml $labels -}}
{{- end -}}

{{/* Labels of one component's objects and pods: (dict "root" $ "component" "gateway"). */}}
{{- define "cove.componentLabels" -}}
{{ include "cove.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
metadata.annotations from commonAnnotations plus extra ones: (dict "root" $ "extra" map).
It writes its own indentation (top-level metadata) and nothing at all when there is nothing.
*/}}
{{- define "cove.annotations" -}}
{{- $annotations := merge (deepCopy (default dict .extra)) (deepCopy (default dict .root.Values.commonAnnotations)) -}}
{{- if $annotations }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
An image reference: (dict "root" $ "image" .Values.gateway.image "cove" true).
global.imageRegistry replaces the registry; a digest pins the image; Cove's own images default
to the chart's appVersion; "latest" is refused (values.schema.json refuses it too).
*/}}
{{- define "cove.image" -}}
{{- $image := .image -}}
{{- $registry := default $image.registry .root.Values.global.imageRegistry -}}
{{- $tag := $image.tag | toString -}}
{{- if and (not $tag) .cove -}}
{{- $tag = .root.Chart.AppVersion | toString -}}
{{- end -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "image %s: the tag \"latest\" is not allowed; give a version or a digest" $image.repository) -}}
{{- end -}}
{{- if and (not $tag) (not $image.digest) -}}
{{- fail (printf "image %s: give a tag or a digest" $image.repository) -}}
{{- end -}}
{{- $ref := $image.repository -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" $registry $image.repository -}}
{{- end -}}
{{- if $tag -}}
{{- $ref = printf "%s:%s" $ref $tag -}}
{{- end -}}
{{- if $image.digest -}}
{{- $ref = printf "%s@%s" $ref $image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{- define "cove.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
  {{- range . }}
  - name: {{ . | quote }}
  {{- end }}
{{- end -}}
{{- end -}}

{{- define "cove.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cove.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cove.reconcilerServiceAccountName" -}}
{{- default (include "cove.componentName" (dict "root" . "component" "reconciler")) .Values.reconciler.serviceAccount.name -}}
{{- end -}}

{{/* Pod security context shared by every pod of the chart. */}}
{{- define "cove.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  {{- with .Values.podSecurityContext.runAsUser }}
  runAsUser: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext.runAsGroup }}
  runAsGroup: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext.fsGroup }}
  fsGroup: {{ . }}
  {{- end }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Container security context shared by every container of the chart. */}}
{{- define "cove.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  privileged: false
  readOnlyRootFilesystem: true
  capabilities:
    drop:
      - ALL
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Scheduling keys of a component's values: nodeSelector, tolerations, affinity. */}}
{{- define "cove.scheduling" -}}
{{- $keys := dict -}}
{{- range $key := list "nodeSelector" "tolerations" "affinity" -}}
{{- with index $ $key -}}
{{- $_ := set $keys $key . -}}
{{- end -}}
{{- end -}}
{{- with $keys -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* Soft spread of a component's replicas over nodes: (dict "root" $ "component" "gateway"). */}}
{{- define "cove.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "cove.componentSelectorLabels" . | nindent 8 }}
{{- end -}}

{{/* --- Secrets: where each secret value comes from --- */}}

{{/* Name of the Secret the chart creates (only when it has something to hold). */}}
{{- define "cove.secretName" -}}
{{- include "cove.fullname" . -}}
{{- end -}}

{{- define "cove.secretKeySecret" -}}
{{- default (include "cove.secretName" .) .Values.secretKey.existingSecret -}}
{{- end -}}

{{- define "cove.secretKeyKey" -}}
{{- if .Values.secretKey.existingSecret -}}{{ .Values.secretKey.existingSecretKey }}{{- else -}}secret-key{{- end -}}
{{- end -}}

{{- define "cove.postgresSecret" -}}
{{- default (include "cove.secretName" .) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{- define "cove.postgresSecretKey" -}}
{{- if .Values.postgresql.auth.existingSecret -}}{{ .Values.postgresql.auth.existingSecretKey }}{{- else -}}postgres-password{{- end -}}
{{- end -}}

{{- define "cove.redisSecret" -}}
{{- default (include "cove.secretName" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "cove.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}{{ .Values.redis.auth.existingSecretKey }}{{- else -}}redis-password{{- end -}}
{{- end -}}

{{- define "cove.externalDatabaseSecret" -}}
{{- default (include "cove.secretName" .) .Values.externalDatabase.existingSecret -}}
{{- end -}}

{{- define "cove.externalDatabaseUrlKey" -}}
{{- if .Values.externalDatabase.existingSecret -}}{{ .Values.externalDatabase.urlKey }}{{- else -}}database-url{{- end -}}
{{- end -}}

{{- define "cove.externalDatabaseAppUrlKey" -}}
{{- if .Values.externalDatabase.existingSecret -}}{{ .Values.externalDatabase.appUrlKey }}{{- else -}}app-database-url{{- end -}}
{{- end -}}

{{- define "cove.externalRedisSecret" -}}
{{- default (include "cove.secretName" .) .Values.externalRedis.existingSecret -}}
{{- end -}}

{{- define "cove.externalRedisUrlKey" -}}
{{- if .Values.externalRedis.existingSecret -}}{{ .Values.externalRedis.urlKey }}{{- else -}}redis-url{{- end -}}
{{- end -}}

{{/*
True (non-empty) when the chart must create its own Secret: a generated or inline secret key,
a bundled database or Redis password, or external URLs given inline.
*/}}
{{- define "cove.needsSecret" -}}
{{- if not .Values.secretKey.existingSecret }}secret-key {{ end -}}
{{- if and .Values.postgresql.enabled (not .Values.postgresql.auth.existingSecret) }}postgres {{ end -}}
{{- if and .Values.redis.enabled (not .Values.redis.auth.existingSecret) }}redis {{ end -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.existingSecret) }}database {{ end -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.existingSecret) }}redis-url {{ end -}}
{{- end -}}

{{- define "cove.postgresHost" -}}
{{- include "cove.componentName" (dict "root" . "component" "postgresql") -}}
{{- end -}}

{{- define "cove.redisHost" -}}
{{- include "cove.componentName" (dict "root" . "component" "redis") -}}
{{- end -}}

{{/*
Database and Redis settings of a Cove container. A bundled server's URL is composed by
Kubernetes from the password variable ($(VAR) expansion), so the password lives only in a Secret.
*/}}
{{- define "cove.connectionEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: COVE_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.postgresSecret" . }}
      key: {{ include "cove.postgresSecretKey" . }}
- name: COVE_DATABASE_URL
  value: {{ printf "postgresql://%s:$(COVE_POSTGRES_PASSWORD)@%s:5432/%s" .Values.postgresql.auth.username (include "cove.postgresHost" .) .Values.postgresql.auth.database | quote }}
{{- else }}
- name: COVE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.externalDatabaseSecret" . }}
      key: {{ include "cove.externalDatabaseUrlKey" . }}
{{- if or .Values.externalDatabase.appUrl .Values.externalDatabase.existingSecret }}
- name: COVE_APP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.externalDatabaseSecret" . }}
      key: {{ include "cove.externalDatabaseAppUrlKey" . }}
      optional: true
{{- end }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: COVE_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.redisSecret" . }}
      key: {{ include "cove.redisSecretKey" . }}
- name: COVE_REDIS_URL
  value: {{ printf "redis://:$(COVE_REDIS_PASSWORD)@%s:6379/0" (include "cove.redisHost" .) | quote }}
{{- else }}
- name: COVE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.externalRedisSecret" . }}
      key: {{ include "cove.externalRedisUrlKey" . }}
{{- end }}
{{- end -}}

{{/* Environment of every Cove container (gateway, platform, worker, beat, migrations). */}}
{{- define "cove.env" -}}
- name: COVE_ENV
  value: {{ .Values.cove.env | quote }}
- name: COVE_LOG_LEVEL
  value: {{ .Values.cove.logLevel | quote }}
- name: COVE_LOG_JSON
  value: {{ .Values.cove.logJson | toString | quote }}
- name: COVE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "cove.secretKeySecret" . }}
      key: {{ include "cove.secretKeyKey" . }}
{{- include "cove.connectionEnv" . }}
{{- with .Values.otel.endpoint }}
- name: COVE_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if .Values.oidc.enabled }}
- name: COVE_OIDC_ISSUER
  value: {{ .Values.oidc.issuerUrl | quote }}
- name: COVE_OIDC_AUDIENCE
  value: {{ .Values.oidc.audience | quote }}
{{- end }}
{{- with .Values.cove.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Every name below is a field of the settings class its container reads (PlatformSettings,
RuntimeSettings, FinetuneSettings); tests/deploy/test_chart_settings.py checks that and parses
the rendered values with those classes.
*/}}

{{/*
The platform API only (PlatformSettings): how the console signs in, and the Keycloak Admin API
the members list reads (its URL and realm split from the issuer, <url>/realms/<realm>).
*/}}
{{- define "cove.platformEnv" -}}
{{- $oidc := .Values.oidc }}
{{- if $oidc.enabled }}
- name: COVE_CONSOLE_OIDC_CLIENT_ID
  value: {{ $oidc.consoleClientId | quote }}
{{- if $oidc.members.enabled }}
{{- $parts := splitList "/realms/" $oidc.issuerUrl }}
- name: COVE_KEYCLOAK_URL
  value: {{ first $parts | quote }}
- name: COVE_KEYCLOAK_REALM
  value: {{ last $parts | quote }}
- name: COVE_KEYCLOAK_CLIENT_ID
  value: {{ $oidc.members.clientId | quote }}
- name: COVE_KEYCLOAK_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $oidc.existingSecret | quote }}
      key: {{ $oidc.members.clientSecretKey | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* How business units are deleted (LifecycleSettings): the API and the worker's purge. */}}
{{- define "cove.lifecycleEnv" -}}
- name: COVE_BU_DELETION_GRACE_DAYS
  value: {{ .Values.tenancy.deletionGraceDays | toString | quote }}
{{- end -}}

{{/*
Where fine-tuning Jobs run (FinetuneSettings): the API reads the runtime (a job's default GPUs),
the worker the rest.
*/}}
{{- define "cove.finetuneEnv" -}}
{{- $pullSecret := first (default (list) .Values.global.imagePullSecrets) | default "" }}
- name: COVE_FINETUNE_RUNTIME
  value: kubernetes
- name: COVE_TRAINER_IMAGE
  value: {{ include "cove.image" (dict "root" . "image" .Values.trainer.image "cove" true) | quote }}
- name: COVE_TRAINER_IMAGE_PULL_SECRET
  value: {{ $pullSecret | quote }}
- name: COVE_FINETUNE_GPU_RESOURCE
  value: {{ .Values.modelServing.gpuResourceName | quote }}
- name: COVE_FINETUNE_NODE_SELECTOR
  value: {{ .Values.modelServing.nodeSelector | toJson | quote }}
- name: COVE_FINETUNE_TOLERATIONS
  value: {{ .Values.modelServing.tolerations | toJson | quote }}
{{- end -}}

{{/*
The reconciler (in the worker): its connection to the Kubernetes API and what it needs to render
model instances (RuntimeSettings). Without an API URL it uses the pod's own service account.
*/}}
{{- define "cove.reconcilerEnv" -}}
{{- $pullSecret := first (default (list) .Values.global.imagePullSecrets) | default "" }}
{{- $kube := .Values.reconciler.kubernetes }}
- name: COVE_KUBE_TIMEOUT_SECONDS
  value: {{ $kube.timeoutSeconds | toString | quote }}
{{- if $kube.apiUrl }}
- name: COVE_KUBE_API_URL
  value: {{ $kube.apiUrl | quote }}
- name: COVE_KUBE_VERIFY_SSL
  value: {{ $kube.verifySsl | toString | quote }}
{{- if $kube.existingSecret }}
- name: COVE_KUBE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $kube.existingSecret | quote }}
      key: {{ $kube.tokenKey | quote }}
{{- end }}
{{- else if $kube.existingSecret }}
{{- fail "reconciler.kubernetes.existingSecret is a token for reconciler.kubernetes.apiUrl; give the URL too (in-cluster, the service account's own token is used)" }}
{{- end }}
- name: COVE_VLLM_IMAGE
  value: {{ include "cove.image" (dict "root" . "image" .Values.modelServing.vllm.image) | quote }}
- name: COVE_VLLM_IMAGE_PULL_SECRET
  value: {{ $pullSecret | quote }}
- name: COVE_GPU_RESOURCE_NAME
  value: {{ .Values.modelServing.gpuResourceName | quote }}
- name: COVE_MODEL_NODE_SELECTOR
  value: {{ .Values.modelServing.nodeSelector | toJson | quote }}
- name: COVE_MODEL_TOLERATIONS
  value: {{ .Values.modelServing.tolerations | toJson | quote }}
- name: COVE_GATEWAY_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* Writable scratch space for containers with a read-only root filesystem. */}}
{{- define "cove.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "cove.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
Pod annotations: a checksum of the chart's Secret (pods restart when it changes) and the
component's podAnnotations: (dict "root" $ "extra" map). Empty when there is none.
*/}}
{{- define "cove.podAnnotations" -}}
{{- $annotations := deepCopy (default dict .extra) -}}
{{- if include "cove.needsSecret" .root -}}
{{- $_ := set $annotations "checksum/secret" (include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum) -}}
{{- end -}}
{{- with $annotations -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
Name of a business unit's namespace: cove-bu-<bu>, the name the reconciler derives too
(cove.platform.deployments.k8s.render.bu_namespace), so it is not configurable.
*/}}
{{- define "cove.buNamespace" -}}
{{- printf "cove-bu-%s" .bu.name -}}
{{- end -}}

{{/*
The namespace of base instances shared across business units: SHARED_NAMESPACE of
cove.platform.deployments.k8s.spec. The reconciler labels it as the BU "platform" (the owner
it renders shared instances for), so the chart does too.
*/}}
{{- define "cove.sharedNamespace" -}}cove-shared{{- end -}}
{{- define "cove.sharedNamespaceOwner" -}}platform{{- end -}}

{{/*
Every namespace the reconciler works in, one per line: the business units' and, when shared
instances are on, cove-shared.
*/}}
{{- define "cove.reconcilerNamespaces" -}}
{{- range .Values.tenancy.businessUnits }}
{{ include "cove.buNamespace" (dict "root" $ "bu" .) }}
{{- end }}
{{- if .Values.modelServing.sharedInstances.enabled }}
{{ include "cove.sharedNamespace" . }}
{{- end }}
{{- end -}}

{{/*
Labels of a business unit's Namespace: (dict "root" $ "bu" $bu). The keys the reconciler also
writes carry its values (managed-by "cove", part-of, cove.dev/bu, Pod Security "restricted"),
so Helm and the reconciler's server-side apply agree on every shared field.
*/}}
{{- define "cove.buNamespaceLabels" -}}
{{- $own := dict
  "helm.sh/chart" (include "cove.chart" .root)
  "app.kubernetes.io/name" (include "cove.name" .root)
  "app.kubernetes.io/instance" .root.Release.Name
  "app.kubernetes.io/version" (.root.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" "cove"
  "app.kubernetes.io/part-of" "cove"
  "cove.dev/bu" .bu.name
  "cove.dev/release-namespace" .root.Release.Namespace
  "pod-security.kubernetes.io/enforce" "restricted"
  "pod-security.kubernetes.io/audit" "restricted"
  "pod-security.kubernetes.io/warn" "restricted" -}}
{{- $labels := dict -}}
{{- range $key, $value := .root.Values.commonLabels -}}
{{- if not (hasKey $own $key) -}}
{{- $_ := set $labels $key ($value | toString) -}}
{{- end -}}
{{- end -}}
{{- toYaml (merge $own $labels) -}}
{{- end -}}
