//! Rendering benchmark: `cargo bench --bench render`.
//!
//! ```text
//!   plain:  100 files × 100 documents = 10,000 objects ──render()──► objects/s
//!   chart:  4 templates × 250 services = 1,000 objects ──render()──► objects/s
//!   floor:  the same YAML bytes ──serde-saphyr──► serde_json::Value, nothing else
//!   parser: the same YAML bytes ──granit parser──► events only (plain case; the ceiling)
//! ```
//!
//! Each case runs in rounds: one round runs windlass, the floor (and, for
//! the plain case, the parser) once each, back to back, so that all of them
//! see the same state of a shared machine. The figures are medians over the
//! rounds, with the slowest and fastest round; the ratio is the median of
//! the rounds' own ratios of windlass's time to the floor's, which moves far
//! less than either time when the machine's speed drifts.
//! Targets (issue 4, one core): plain 50,000 objects/s, chart 5,000
//! objects/s. Nothing here asserts speed; it prints figures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use windlass::render::{MemoryTree, RenderInput, render, to_yaml};

/// The allocator the `windlass` binary ships with (src/main.rs), so the
/// figures are the binary's. The floor runs on it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 11;

fn main() {
    println!("windlass render benchmark (median of {ROUNDS} interleaved rounds, one thread)");
    println!();
    plain();
    println!();
    chart();
}

fn plain() {
    const FILES: usize = 100;
    const PER_FILE: usize = 100;
    let mut tree = MemoryTree::new("bench/plain");
    let mut texts = Vec::new();
    for file in 0..FILES {
        let mut text = String::new();
        for doc in 0..PER_FILE {
            text.push_str("---\n");
            text.push_str(&object(file * PER_FILE + doc));
        }
        tree.insert(format!("apps/app-{file:03}.yaml"), text.clone());
        texts.push(text);
    }
    let objects = FILES * PER_FILE;
    let bytes: usize = texts.iter().map(String::len).sum();

    let [windlass, floor, events] = rounds([
        &mut || {
            let rendered = render(&RenderInput::new(&tree, "bench")).expect("plain render");
            assert_eq!(rendered.objects.len(), objects);
            black_box(rendered.manifest_digest);
        },
        &mut || {
            for text in &texts {
                black_box(parse_floor(text));
            }
        },
        &mut || {
            for text in &texts {
                black_box(parser_events(text));
            }
        },
    ]);
    report(
        &format!(
            "plain: parse + check + digest {objects} objects ({:.1} MiB, {FILES} files)",
            bytes as f64 / 1_048_576.0
        ),
        objects,
        &windlass,
        &floor,
        50_000.0,
    );
    println!(
        "  parser    {}   YAML events only, no values built (the ceiling)",
        rate(objects, &events)
    );
    println!(
        "  ratio     {:.2}× the parser's time",
        median_ratio(&windlass, &events)
    );
}

fn chart() {
    const SERVICES: usize = 250;
    let mut values = String::from("services:\n");
    for i in 0..SERVICES {
        values.push_str(&format!(
            "  - name: svc-{i:03}\n    replicas: {}\n    port: {}\n    image: registry.example.com/team/svc-{i:03}\n    tag: \"1.{}.0\"\n",
            1 + i % 3,
            8000 + i,
            i % 10
        ));
    }
    values.push_str(
        "resources:\n  requests:\n    cpu: 50m\n    memory: 64Mi\n  limits:\n    memory: 128Mi\n",
    );
    let tree = MemoryTree::new("bench/chart")
        .with("Chart.yaml", "name: fleet\nversion: 1.0.0\ndescription: 1,000 objects\n")
        .with("values.yaml", values)
        .with(
            "templates/_labels.tpl",
            "app.kubernetes.io/name: {{name}}\napp.kubernetes.io/instance: {{@root.release.name}}\napp.kubernetes.io/managed-by: windlass\n",
        )
        .with(
            "templates/deployments.yaml",
            "{{#each values.services}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{name}}\n  labels:\n    {{> labels}}\nspec:\n  replicas: {{replicas}}\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: {{name}}\n  template:\n    metadata:\n      labels:\n        {{> labels}}\n    spec:\n      containers:\n        - name: app\n          image: \"{{image}}:{{tag}}\"\n          ports:\n            - containerPort: {{port}}\n          resources:{{nindent 12 (toYaml @root.values.resources)}}\n{{/each}}\n",
        )
        .with(
            "templates/services.yaml",
            "{{#each values.services}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{name}}\n  labels:\n    {{> labels}}\nspec:\n  selector:\n    app.kubernetes.io/name: {{name}}\n  ports:\n    - port: {{port}}\n      targetPort: {{port}}\n{{/each}}\n",
        )
        .with(
            "templates/configmaps.yaml",
            "{{#each values.services}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{name}}-config\n  labels:\n    {{> labels}}\ndata:\n  SERVICE_NAME: {{quote name}}\n  SERVICE_PORT: {{quote port}}\n  CHECKSUM: {{sha256 (toJson this)}}\n{{/each}}\n",
        )
        .with(
            "templates/serviceaccounts.yaml",
            "{{#each values.services}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{name}}\n  labels:\n    {{> labels}}\n{{/each}}\n",
        );
    let objects = SERVICES * 4;
    let rendered = render(&RenderInput::new(&tree, "bench")).expect("chart render");
    assert_eq!(rendered.objects.len(), objects);
    // The floor parses what the templates produce: the rendered objects as
    // YAML documents.
    let output: String = rendered
        .objects
        .iter()
        .map(|o| format!("---\n{}", to_yaml(&o.object)))
        .collect();
    let [windlass, floor] = rounds([
        &mut || {
            let rendered = render(&RenderInput::new(&tree, "bench")).expect("chart render");
            black_box(rendered.manifest_digest);
        },
        &mut || {
            // serde-saphyr's default budget allows 1,024 documents per stream.
            for chunk in output
                .split_inclusive("\n---\n")
                .collect::<Vec<_>>()
                .chunks(500)
            {
                black_box(parse_floor(&chunk.concat()));
            }
        },
    ]);
    report(
        &format!("chart: values + handlebars + parse + check + digest {objects} objects"),
        objects,
        &windlass,
        &floor,
        5_000.0,
    );
}

/// The parser serde-saphyr and windlass share, events only.
fn parser_events(text: &str) -> usize {
    let mut options = serde_saphyr::granit_parser::Options::default();
    options.emit_comments = false;
    let mut parser = serde_saphyr::granit_parser::Parser::new_from_str_with_options(text, options);
    let mut count = 0;
    while let Some(event) = parser.next_event() {
        event.expect("valid YAML");
        count += 1;
    }
    count
}

/// The floor: serde-saphyr straight into JSON values, no windlass work.
fn parse_floor(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_str_multiple(text).expect("floor parse")
}

/// Runs each case once per round, back to back, after one warm-up round;
/// returns each case's times, round by round.
fn rounds<const N: usize>(mut cases: [&mut dyn FnMut(); N]) -> [Vec<Duration>; N] {
    for case in cases.iter_mut() {
        case();
    }
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        for (case, times) in cases.iter_mut().zip(times.iter_mut()) {
            let started = Instant::now();
            case();
            times.push(started.elapsed());
        }
    }
    times
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// The median over the rounds of `ours ÷ floor`, each round's own ratio.
fn median_ratio(ours: &[Duration], floor: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = ours
        .iter()
        .zip(floor)
        .map(|(ours, floor)| ours.as_secs_f64() / floor.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// `objects/s (ms)` at the median, then the slowest and fastest round.
fn rate(objects: usize, times: &[Duration]) -> String {
    let per_second = |d: Duration| objects as f64 / d.as_secs_f64();
    let (slowest, fastest) = (
        times.iter().max().expect("rounds"),
        times.iter().min().expect("rounds"),
    );
    let median = median(times);
    format!(
        "{:>9.0} objects/s  ({:.1} ms; rounds {:.0}–{:.0} objects/s)",
        per_second(median),
        median.as_secs_f64() * 1e3,
        per_second(*slowest),
        per_second(*fastest),
    )
}

fn report(what: &str, objects: usize, windlass: &[Duration], floor: &[Duration], target: f64) {
    let median_rate = objects as f64 / median(windlass).as_secs_f64();
    println!("{what}");
    println!(
        "  windlass  {}   target {:.0} objects/s: {}",
        rate(objects, windlass),
        target,
        if median_rate >= target {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  floor     {}   serde-saphyr → serde_json::Value, same YAML",
        rate(objects, floor)
    );
    println!(
        "  ratio     {:.2}× the floor's time (median of the rounds' ratios)",
        median_ratio(windlass, floor)
    );
}

/// One realistic object: a Deployment, Service or ConfigMap in turn.
fn object(i: usize) -> String {
    match i % 3 {
        0 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    app.kubernetes.io/name: app-{i}\n    app.kubernetes.io/part-of: fleet\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: app-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: app-{i}\n    spec:\n      containers:\n        - name: app\n          image: registry.example.com/team/app:1.{}.0\n          ports:\n            - containerPort: 8080\n          env:\n            - name: LOG_LEVEL\n              value: info\n          resources:\n            requests:\n              cpu: 50m\n              memory: 64Mi\n            limits:\n              memory: 128Mi\n",
            i % 10
        ),
        1 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  labels:\n    app.kubernetes.io/name: app-{i}\nspec:\n  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: app-{i}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}-config\ndata:\n  LOG_LEVEL: info\n  FEATURE_FLAGS: \"search,checkout\"\n  banner.txt: |\n    Welcome to app {i}.\n    Have a nice day.\n"
        ),
    }
}
