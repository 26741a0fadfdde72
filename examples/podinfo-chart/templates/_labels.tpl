app.kubernetes.io/name: {{chart.name}}
app.kubernetes.io/instance: {{release.name}}
app.kubernetes.io/version: {{quote (required "image.tag is not set: pick an environment with --env, or --set image.tag=..." values.image.tag)}}
app.kubernetes.io/managed-by: windlass
windlass.dev/environment: {{quote (default "none" environment)}}
