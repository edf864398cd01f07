//! Just enough JSON Schema for the OpenAPI document kup serves: a validator for exactly the
//! keywords utoipa emits (and kup's hand-written schemas use), and a generator of a value
//! from a schema. A maintained validator crate was not worth its dependencies here
//! (`jsonschema` brings regex engines, IDNA and more); this one refuses any keyword or format
//! it does not know, so a schema it cannot judge never passes silently.

use serde_json::{Map, Value};

/// Keywords that describe and never constrain.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
];

pub struct Schemas<'a> {
    /// The whole OpenAPI document, for `$ref`.
    pub doc: &'a Value,
}

impl<'a> Schemas<'a> {
    /// Follows a local `$ref` (`#/components/schemas/X`).
    pub fn resolve(&self, reference: &str) -> &'a Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used: {reference}"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {reference}"))
    }

    /// Every way `value` breaks `schema`, each as `at: what`. `strict`: an object may not carry
    /// a property its schema does not declare (so a reply cannot grow fields the document
    /// does not know about).
    pub fn validate(&self, value: &Value, schema: &Value, strict: bool) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(value, schema, "", strict, &mut errors);
        errors
    }

    fn check(&self, v: &Value, s: &Value, at: &str, strict: bool, errors: &mut Vec<String>) {
        let here = if at.is_empty() { "/" } else { at };
        let fail = |errors: &mut Vec<String>, what: String| errors.push(format!("{here}: {what}"));
        let s = match s {
            Value::Bool(true) => return,
            Value::Bool(false) => return fail(errors, "no value is allowed".into()),
            Value::Object(s) => s,
            other => return fail(errors, format!("not a schema: {other}")),
        };
        for (keyword, arg) in s {
            match keyword.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "$ref" => self.check(v, self.resolve(arg.as_str().unwrap()), at, strict, errors),
                "type" => {
                    let types: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => vec![],
                    };
                    if !types.iter().any(|t| has_type(v, t)) {
                        fail(errors, format!("{} is not of type {arg}", short(v)));
                    }
                }
                "enum" => {
                    if !arg.as_array().unwrap().contains(v) {
                        fail(errors, format!("{} is not one of {arg}", short(v)));
                    }
                }
                "const" => {
                    if v != arg {
                        fail(errors, format!("{} is not {arg}", short(v)));
                    }
                }
                "properties" => {
                    let Some(o) = v.as_object() else { continue };
                    let declared = arg.as_object().unwrap();
                    for (name, ps) in declared {
                        if let Some(pv) = o.get(name) {
                            self.check(pv, ps, &format!("{at}/{name}"), strict, errors);
                        }
                    }
                    let open = ["additionalProperties", "allOf", "anyOf", "oneOf"]
                        .iter()
                        .any(|k| s.contains_key(*k));
                    if strict && !open {
                        for name in o.keys().filter(|k| !declared.contains_key(*k)) {
                            fail(errors, format!("property {name:?} is not in the schema"));
                        }
                    }
                }
                "required" => {
                    let Some(o) = v.as_object() else { continue };
                    for name in arg.as_array().unwrap().iter().filter_map(Value::as_str) {
                        if !o.contains_key(name) {
                            fail(errors, format!("required property {name:?} is missing"));
                        }
                    }
                }
                "additionalProperties" => {
                    let Some(o) = v.as_object() else { continue };
                    let declared = s.get("properties").and_then(Value::as_object);
                    for (name, pv) in o {
                        if !declared.is_some_and(|d| d.contains_key(name)) {
                            self.check(pv, arg, &format!("{at}/{name}"), strict, errors);
                        }
                    }
                }
                "items" => {
                    let Some(a) = v.as_array() else { continue };
                    for (i, item) in a.iter().enumerate() {
                        self.check(item, arg, &format!("{at}/{i}"), strict, errors);
                    }
                }
                "minItems" | "maxItems" | "minLength" | "maxLength" => {
                    let len = match v {
                        Value::Array(a) if keyword.ends_with("Items") => a.len(),
                        Value::String(t) if keyword.ends_with("Length") => t.chars().count(),
                        _ => continue,
                    };
                    let n = arg.as_u64().unwrap() as usize;
                    if (keyword.starts_with("min") && len < n)
                        || (keyword.starts_with("max") && len > n)
                    {
                        fail(errors, format!("length {len} breaks {keyword} {n}"));
                    }
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                    let (Some(x), Some(bound)) = (v.as_f64(), arg.as_f64()) else {
                        continue;
                    };
                    let ok = match keyword.as_str() {
                        "minimum" => x >= bound,
                        "maximum" => x <= bound,
                        "exclusiveMinimum" => x > bound,
                        _ => x < bound,
                    };
                    if !ok {
                        fail(errors, format!("{x} breaks {keyword} {bound}"));
                    }
                }
                "pattern" => {
                    let Some(t) = v.as_str() else { continue };
                    let re = regex_automata::meta::Regex::new(arg.as_str().unwrap())
                        .unwrap_or_else(|e| panic!("pattern {arg}: {e}"));
                    if !re.is_match(t) {
                        fail(errors, format!("{t:?} does not match {arg}"));
                    }
                }
                "format" => {
                    if let Some(problem) = format_problem(v, arg.as_str().unwrap()) {
                        fail(errors, problem);
                    }
                }
                "allOf" | "anyOf" | "oneOf" => {
                    let subs = arg.as_array().unwrap();
                    let matching = subs
                        .iter()
                        .filter(|sub| self.validate(v, sub, strict).is_empty())
                        .count();
                    let ok = match keyword.as_str() {
                        "allOf" => matching == subs.len(),
                        "anyOf" => matching >= 1,
                        _ => matching == 1,
                    };
                    if !ok {
                        let n = subs.len();
                        fail(
                            errors,
                            format!(
                                "{} matches {matching} of the {n} schemas of {keyword}",
                                short(v)
                            ),
                        );
                    }
                }
                other => fail(
                    errors,
                    format!("the test's validator does not know the keyword {other:?}: teach it"),
                ),
            }
        }
    }

    /// A value that `schema` accepts, built from the schema alone: its example or default
    /// where it has one, else the least value of each required part. Panics when the schema
    /// gives too little to build one from (then it needs an example).
    pub fn sample(&self, schema: &Value) -> Value {
        let s = schema.as_object().expect("a schema object");
        if let Some(r) = s.get("$ref") {
            return self.sample(self.resolve(r.as_str().unwrap()));
        }
        for key in ["example", "default", "const"] {
            if let Some(x) = s.get(key) {
                return x.clone();
            }
        }
        for key in ["examples", "enum", "oneOf", "anyOf"] {
            if let Some(first) = s.get(key).and_then(|x| x.as_array()?.first()) {
                return if key == "oneOf" || key == "anyOf" {
                    self.sample(first)
                } else {
                    first.clone()
                };
            }
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ => "object",
        };
        match ty {
            "object" => {
                let props = s.get("properties").and_then(Value::as_object);
                let mut o = Map::new();
                for name in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = name.as_str().unwrap();
                    let ps = props
                        .and_then(|p| p.get(name))
                        .unwrap_or_else(|| panic!("required {name:?} has no schema"));
                    o.insert(name.to_string(), self.sample(ps));
                }
                Value::Object(o)
            }
            "array" => {
                let n = s.get("minItems").and_then(Value::as_u64).unwrap_or(1);
                let item = self.sample(s.get("items").expect("an array schema has items"));
                Value::Array(vec![item; n as usize])
            }
            "string" => {
                assert!(
                    !s.contains_key("pattern"),
                    "a string with a pattern needs an example: {schema}"
                );
                match s.get("format").and_then(Value::as_str) {
                    Some("date-time") => "2020-02-20T16:08:48.854869+00:00".into(),
                    _ => "string".into(),
                }
            }
            "integer" | "number" => s.get("minimum").cloned().unwrap_or(Value::from(1)),
            "boolean" => Value::Bool(false),
            _ => Value::Null,
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|x| x.fract() == 0.0),
        _ => false,
    }
}

fn format_problem(v: &Value, format: &str) -> Option<String> {
    let int_range = |lo: i128, hi: i128| {
        let x = v.as_i64().map(i128::from).or(v.as_u64().map(i128::from))?;
        (x < lo || x > hi).then(|| format!("{x} is outside {format}"))
    };
    match format {
        "int32" => int_range(i32::MIN.into(), i32::MAX.into()),
        "int64" => int_range(i64::MIN.into(), i64::MAX.into()),
        "uint32" => int_range(0, u32::MAX.into()),
        "uint64" => int_range(0, u64::MAX.into()),
        "double" | "float" | "binary" => None,
        "date-time" => {
            let t = v.as_str()?;
            t.parse::<jiff::Timestamp>()
                .err()
                .map(|e| format!("{t:?} is not a date-time: {e}"))
        }
        other => Some(format!(
            "the test's validator does not know the format {other:?}: teach it"
        )),
    }
}

fn short(v: &Value) -> String {
    let mut t = v.to_string();
    if t.len() > 80 {
        t.truncate(77);
        t.push_str("...");
    }
    t
}
