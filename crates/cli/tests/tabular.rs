//! Named tabular records: a model from `hone train` with a text column is
//! called with its features by name (categories as their text) over V2
//! REST and TF Serving (rows and columns), and answers as the positional
//! request the card describes; bad records get a 400 naming the feature.

mod common;

use common::{ServeProcess, bench_step, hone, s, tmp};
use serde_json::{Value, json};

#[test]
fn features_by_name_answer_as_the_positional_input() {
    let dir = tmp("tabular", "named");
    let mut csv = String::from("age,income,region,label\n");
    for i in 0..120 {
        let region = ["north", "south", "east", "west"][i % 4];
        let age = 20 + (i * 7) % 50;
        let income = 30.0 + (i * 13 % 40) as f64;
        let label = u8::from(region == "west" || age > 50);
        csv += &format!("{age},{income},{region},{label}\n");
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
    let model = dir.join("repo/m/1/model.onnx");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    let o = hone(&[
        "train",
        s(&dir.join("data.csv")),
        "--target",
        "label",
        "--categorical",
        "region",
        "--epochs",
        "5",
        "-o",
        s(&model),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let card: Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("card.json")).unwrap()).unwrap();
    let features = card["input"]["features"].as_array().unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["age", "income", "region"]);
    let cats: Vec<&str> = features[2]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let west = cats.iter().position(|c| *c == "west").unwrap() as f64;
    let north = cats.iter().position(|c| *c == "north").unwrap() as f64;

    let server = ServeProcess::start(&dir.join("repo"));
    let answer = |path: &str, body: Value| {
        let (code, text) = server.post(path, &body.to_string());
        assert_eq!(code, 200, "{path}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let positional = answer(
        "/v2/models/m/infer",
        json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
                           "data": [26, 40.5, west, 70, 31.0, north]}]}),
    );
    let want = &positional["outputs"][0]["data"];
    let named = answer(
        "/v2/models/m/infer",
        json!({"inputs": [
            {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["west", "north"]},
            {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [26, 70]},
            {"name": "income", "shape": [2], "datatype": "FP32", "data": [40.5, 31.0]}]}),
    );
    assert_eq!(&named["outputs"][0]["data"], want, "{named}");
    // A request by name is answered with the label as in the data too.
    let p0 = want[0].as_f64().unwrap();
    let label0 = if p0 >= 0.5 { "1" } else { "0" };
    assert_eq!(named["outputs"][1]["name"], "label", "{named}");
    assert_eq!(named["outputs"][1]["datatype"], "BYTES");
    assert_eq!(named["outputs"][1]["data"][0], label0, "{named}");
    let prob0 = named["outputs"][2]["data"][0].as_f64().unwrap();
    assert!((prob0 - p0.max(1.0 - p0)).abs() < 1e-6, "{named}");
    // A positional request gets it when it asks.
    let asked = answer(
        "/v2/models/m/infer",
        json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32",
                           "data": [26, 40.5, west, 70, 31.0, north]}],
               "outputs": [{"name": "label"}]}),
    );
    assert_eq!(asked["outputs"].as_array().unwrap().len(), 1, "{asked}");
    assert_eq!(asked["outputs"][0]["data"][0], label0, "{asked}");
    // Metadata names the features, their types and categories, and the classes.
    let (_, meta) = server.get("/v2/models/m");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["features"][2]["name"], "region", "{meta}");
    assert_eq!(meta["features"][2]["datatype"], "BYTES", "{meta}");
    assert_eq!(
        meta["features"][2]["categories"].as_array().unwrap().len(),
        4
    );
    assert_eq!(meta["classes"], json!(["0", "1"]), "{meta}");
    let (_, tfs) = server.get("/v1/models/m/metadata");
    let tfs: Value = serde_json::from_str(&tfs).unwrap();
    let sig = &tfs["metadata"]["signature_def"]["signature_def"]["features"];
    assert_eq!(sig["inputs"]["region"]["dtype"], "DT_STRING", "{tfs}");
    assert_eq!(sig["outputs"]["label"]["dtype"], "DT_STRING", "{tfs}");

    // TF Serving: records as objects, and columns by name.
    let rows = answer(
        "/v1/models/m:predict",
        json!({"instances": [{"age": 26, "income": 40.5, "region": "west"},
                             {"age": 70, "income": 31.0, "region": "north"}]}),
    );
    let cols = answer(
        "/v1/models/m:predict",
        json!({"inputs": {"age": [26, 70], "income": [40.5, 31.0], "region": ["west", "north"]}}),
    );
    // Rows of a named request are objects: the model's output, the label
    // and its probability; columns the same by name.
    let flat = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| match r {
                Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                Value::Object(o) => match &o["output"] {
                    Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
                    x => vec![x.as_f64().unwrap()],
                },
                x => vec![x.as_f64().unwrap()],
            })
            .collect()
    };
    let want: Vec<f64> = want
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(flat(&rows["predictions"]), want, "{rows}");
    assert_eq!(rows["predictions"][0]["label"], label0, "{rows}");
    assert_eq!(flat(&cols["outputs"]["output"]), want, "{cols}");
    assert_eq!(cols["outputs"]["label"][0], label0, "{cols}");

    // Bad records: a 400 naming the feature, and the server keeps serving.
    for (path, body, says) in [
        (
            "/v2/models/m/infer",
            json!({"inputs": [
                {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["sout"]},
                {"name": "age", "shape": [1], "datatype": "FP32", "data": [26]},
                {"name": "income", "shape": [1], "datatype": "FP32", "data": [40.5]}]}),
            "feature 'region': unknown category 'sout'",
        ),
        (
            "/v2/models/m/infer",
            json!({"inputs": [
                {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["west"]},
                {"name": "age", "shape": [1], "datatype": "FP32", "data": [26]}]}),
            "missing feature 'income'",
        ),
        (
            "/v1/models/m:predict",
            json!({"instances": [{"age": 26, "income": 40.5, "region": 7}]}),
            "input 'region'",
        ),
        (
            "/v1/models/m:predict",
            json!({"instances": [{"age": "old", "income": 40.5, "region": "west"}]}),
            "input 'age'",
        ),
    ] {
        let (code, text) = server.post(path, &body.to_string());
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let again = answer(
        "/v1/models/m:predict",
        json!({"instances": [{"age": 26, "income": 40.5, "region": "west"}]}),
    );
    assert_eq!(flat(&again["predictions"])[0], want[0]);

    // `hone bench` sends the training CSV as records by feature name.
    let r = bench_step(
        &server,
        &[
            "--model",
            "m",
            "--data",
            s(&dir.join("data.csv")),
            "--batch",
            "4",
        ],
    );
    assert_eq!(
        r["inputs"],
        json!(["age FP32 [4]", "income FP32 [4]", "region BYTES [4]"]),
        "{r}"
    );

    // With unseen_category: ignore, an unknown category is answered with
    // an all-zero one-hot and a flag on its row.
    drop(server);
    std::fs::write(
        dir.join("repo/m/config.pbtxt"),
        "parameters { key: \"unseen_category\" value: { string_value: \"ignore\" } }\n",
    )
    .unwrap();
    let server = ServeProcess::start(&dir.join("repo"));
    let (code, text) = server.post(
        "/v1/models/m:predict",
        &json!({"instances": [{"age": 26, "income": 40.5, "region": "south-east"},
                             {"age": 26, "income": 40.5, "region": "west"}]})
        .to_string(),
    );
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["predictions"][0]["unseen_category"], true, "{v}");
    assert_eq!(v["predictions"][1]["unseen_category"], false, "{v}");
    assert_eq!(
        flat(&json!([v["predictions"][1].clone()]))[0],
        want[0],
        "{v}"
    );
}
