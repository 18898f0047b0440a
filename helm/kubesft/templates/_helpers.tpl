{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kubesft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects; the release name alone when it holds the chart name. */}}
{{- define "kubesft.fullname" -}}
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

{{- define "kubesft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubesft.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubesft.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kubesft.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubesft
{{- end }}

{{- define "kubesft.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubesft.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubesft.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does in each namespace it watches, verb by verb; the chart test asks the
apiserver (`kubectl auth can-i`) for each of them. No wildcards: a new API call in the
operator needs a new line here.
*/}}
{{- define "kubesft.operatorRules" -}}
# Watch SFTJobs and SFTDatasets (kopf) and read them (reconcile).
- apiGroups: ["kubesft.io"]
  resources: ["sftjobs", "sftdatasets"]
  verbs: ["get", "list", "watch"]
# Write status. `get` too: the per-job trainer Role grants get+patch on sftjobs/status,
# and RBAC only lets the operator grant what it holds itself.
- apiGroups: ["kubesft.io"]
  resources: ["sftjobs/status", "sftdatasets/status"]
  verbs: ["get", "patch"]
# Children carry ownerReferences with blockOwnerDeletion; where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift), that needs
# `update` on the owner's finalizers. Neither resource serves that subresource: no other power.
- apiGroups: ["kubesft.io"]
  resources: ["sftjobs/finalizers", "sftdatasets/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs/finalizers"]
  verbs: ["update"]
# Trainer and preparation Jobs: create, watch, suspend/resume (patch); a superseded
# preparation Job is retired by patching its deadline and TTL (no delete).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "patch"]
# Pods of those Jobs: watched for phase, exit code and termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Trainer and preparation spec ConfigMaps; patch re-parents each to its Job. `get` also
# reads an SFTDataset's ConfigMap source (its content keys the preparation).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "patch"]
# SFTDataset source and data claims: checked to exist (SourceNotFound names a missing one).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# Headless Service (multi-node) and the trainer's ServiceAccount.
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["create", "get"]
# The trainer's Role/RoleBinding: get+patch on its own SFTJob's status only.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "get"]
# core/v1 Events on SFTJobs/SFTDatasets (kubesft's and kopf's; kopf posts no events.k8s.io).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
