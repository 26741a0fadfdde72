//! Kustomize and Helm through windlass, against the binaries' own time.
//!
//! ```text
//!   a Kustomize overlay of 1,000 ConfigMaps (base + namePrefix, commonLabels, a patch)
//!   a Helm chart rendering 1,000 ConfigMaps from one ranged template
//!     floor:    `kustomize build` / `helm template` run directly (one process)
//!     windlass: `render::render` of the same tree (materialise, run the same
//!               binary, parse with windlass's loader, check, digest)
//!   11 interleaved rounds; the median of each round's ratio
//! ```
//!
//! The binaries come from WINDLASS_KUSTOMIZE_BIN / WINDLASS_HELM_BIN, or
//! `deploy/local/tools.sh build`. Run: `cargo bench --bench render_tools`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use windlass::render::tool::{ExternalTools, ToolPaths};
use windlass::render::{self, LocalDirectory, RenderInput};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 11;
/// A round's objects are also checked: a render that lost objects is no render.
const FILES: usize = 20;

fn main() {
    let paths = tool_paths();
    let scratch = std::env::temp_dir().join(format!("windlass-bench-tools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let overlay = kustomize_tree(&scratch.join("kustomize"));
    let chart = helm_tree(&scratch.join("chart"));
    let tools = ExternalTools::new(paths.clone());

    let mut results = Vec::new();
    for (name, dir, environment, floor_args) in [
        (
            "kustomize overlay",
            overlay.clone(),
            Some("bench"),
            vec![
                "build".to_string(),
                "--load-restrictor".into(),
                "LoadRestrictionsRootOnly".into(),
                overlay.join("overlays/bench").display().to_string(),
            ],
        ),
        (
            "helm chart",
            chart.clone(),
            None,
            vec![
                "template".to_string(),
                "bench".into(),
                chart.display().to_string(),
                "--namespace".into(),
                "bench".into(),
                "--include-crds".into(),
            ],
        ),
    ] {
        let binary = match name {
            "helm chart" => paths.helm.clone().expect("helm"),
            _ => paths.kustomize.clone().expect("kustomize"),
        };
        let mut floors = Vec::new();
        let mut windlass_times = Vec::new();
        let mut ratios = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let output = Command::new(&binary).args(&floor_args).output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let floor = started.elapsed();

            let started = Instant::now();
            let count = render_with_windlass(&dir, environment, &tools);
            let ours = started.elapsed();
            assert_eq!(count, OBJECTS, "{name}: every object rendered");
            floors.push(floor);
            windlass_times.push(ours);
            ratios.push(ours.as_secs_f64() / floor.as_secs_f64());
        }
        results.push((
            name,
            median(&mut floors),
            median(&mut windlass_times),
            median_f64(&mut ratios),
        ));
    }
    println!(
        "render through the real binaries, {OBJECTS} objects, median of {ROUNDS} interleaved rounds:"
    );
    println!(
        "  {:<20} {:>12} {:>12} {:>18}",
        "", "binary", "windlass", "windlass ÷ binary"
    );
    for (name, floor, ours, ratio) in results {
        println!(
            "  {name:<20} {:>10.0}ms {:>10.0}ms {:>17.2}×   target ≤ 1.1×",
            floor.as_secs_f64() * 1e3,
            ours.as_secs_f64() * 1e3,
            ratio
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

fn render_with_windlass(dir: &Path, environment: Option<&str>, tools: &ExternalTools) -> usize {
    let tree = LocalDirectory::new(dir).unwrap();
    let mut input = RenderInput::new(&tree, "bench".to_string());
    input.tools = Some(tools);
    input.name = Some("bench".into());
    input.environment = environment.map(str::to_string);
    render::render(&input).unwrap().objects.len()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn median_f64(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn tool_paths() -> ToolPaths {
    let mut paths = ToolPaths::resolve();
    if paths.kustomize.is_none() || paths.helm.is_none() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/tools.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("build")
            .status()
            .unwrap();
        assert!(status.success(), "deploy/local/tools.sh build failed");
        paths = ToolPaths::resolve();
    }
    assert!(
        paths.kustomize.is_some() && paths.helm.is_some(),
        "kustomize and helm are needed"
    );
    paths
}

/// base/ holds the ConfigMaps in FILES files; overlays/bench/ prefixes,
/// labels and patches them. Returns the overlay's directory.
fn kustomize_tree(root: &Path) -> PathBuf {
    let base = root.join("base");
    let overlay = root.join("overlays/bench");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&overlay).unwrap();
    let per_file = OBJECTS / FILES;
    let mut resources = Vec::new();
    for file in 0..FILES {
        let mut text = String::new();
        for i in 0..per_file {
            let n = file * per_file + i;
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{n:04}\ndata:\n  index: \"{n}\"\n  text: some configuration value {n}\n"
            ));
        }
        let name = format!("configs-{file:02}.yaml");
        std::fs::write(base.join(&name), text).unwrap();
        resources.push(name);
    }
    let list: String = resources.iter().map(|r| format!("- {r}\n")).collect();
    std::fs::write(
        base.join("kustomization.yaml"),
        format!("resources:\n{list}"),
    )
    .unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources:\n- ../../base\nnamePrefix: bench-\ncommonLabels:\n  tier: bench\npatches:\n- target: {kind: ConfigMap, name: config-0001}\n  patch: |-\n    - op: add\n      path: /data/patched\n      value: \"yes\"\n",
    )
    .unwrap();
    // Kustomize reads ../../base: the tree windlass renders is the root.
    root.to_path_buf()
}

/// A chart whose one template ranges over OBJECTS items.
fn helm_tree(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(
        root.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(
        root.join("values.yaml"),
        format!("count: {OBJECTS}\ntext: some configuration value\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("templates/_helpers.tpl"),
        "{{- define \"bench.labels\" -}}\napp.kubernetes.io/name: {{ .Chart.Name }}\napp.kubernetes.io/instance: {{ .Release.Name }}\n{{- end -}}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/configmaps.yaml"),
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{{ printf \"%04d\" $i }}\n  labels:\n    {{- include \"bench.labels\" $ | nindent 4 }}\ndata:\n  index: {{ $i | quote }}\n  text: {{ $.Values.text }} {{ $i }}\n{{- end }}\n",
    )
    .unwrap();
    root.to_path_buf()
}
