app.kubernetes.io/name: {{chart.name}}
app.kubernetes.io/instance: {{release.name}}
