// crdcheck validates a CustomResourceDefinition with the API server's own code
// (k8s.io/apiextensions-apiserver at the version the test cluster runs): structural
// schema, CEL compilation and cost budget, defaults. Then it puts objects through what
// `kubectl apply` would: pruning, defaulting, OpenAPI validation and CEL rules.
//
// No cluster is needed, so CRD mistakes show up before the e2e tests:
//
//	cd tests/crdcheck && go run . ../../crds/capstan.dev_releases.yaml \
//	    ../../examples/*.yaml testdata/*.yaml
//
// An object must be accepted unless it carries the annotation
// crdcheck.capstan.dev/expect: each ";;"-separated part of its value must then appear
// in the errors. Exit status 1 when anything differs from that.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

const expectAnnotation = "crdcheck.capstan.dev/expect"

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "crdcheck: "+format+"\n", a...)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: crdcheck crd.yaml [objects.yaml...]")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		die("%v", err)
	}
	var v1crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(raw, &v1crd); err != nil {
		die("%s: %v", os.Args[1], err)
	}
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1crd)
	var crd apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil); err != nil {
		die("convert: %v", err)
	}
	if errs := validation.ValidateCustomResourceDefinition(context.TODO(), &crd); len(errs) > 0 {
		for _, e := range errs {
			fmt.Printf("FAIL %s: %v\n", os.Args[1], e)
		}
		os.Exit(1)
	}
	fmt.Printf("ok   %s\n", os.Args[1])

	failures := 0
	for _, v := range crd.Spec.Versions {
		props := crd.Spec.Validation
		if v.Schema != nil {
			props = v.Schema
		}
		ss, err := structuralschema.NewStructural(props.OpenAPIV3Schema)
		if err != nil {
			die("structural: %v", err)
		}
		sv, _, err := apiservervalidation.NewSchemaValidator(props.OpenAPIV3Schema)
		if err != nil {
			die("schema validator: %v", err)
		}
		celv := cel.NewValidator(ss, true, celconfig.PerCallLimit)
		apiVersion := crd.Spec.Group + "/" + v.Name
		for _, path := range os.Args[2:] {
			data, err := os.ReadFile(path)
			if err != nil {
				die("%v", err)
			}
			for _, doc := range bytes.Split(data, []byte("\n---")) {
				js, err := yaml.YAMLToJSON(doc)
				if err != nil {
					die("%s: %v", path, err)
				}
				var obj map[string]interface{}
				if err := utiljson.Unmarshal(js, &obj); err != nil || obj == nil {
					continue
				}
				if obj["apiVersion"] != apiVersion || obj["kind"] != crd.Spec.Names.Kind {
					continue
				}
				md, _ := obj["metadata"].(map[string]interface{})
				name, _ := md["name"].(string)
				annotations, _ := md["annotations"].(map[string]interface{})
				expect, _ := annotations[expectAnnotation].(string)

				pruning.Prune(obj, ss, true)
				structuraldefaulting.Default(obj, ss)
				errs := apiservervalidation.ValidateCustomResource(nil, obj, sv)
				celErrs, _ := celv.Validate(context.TODO(), nil, ss, obj, nil, celconfig.RuntimeCELCostBudget)
				errs = append(errs, celErrs...)
				var all []string
				for _, e := range errs {
					all = append(all, e.Error())
				}
				joined := strings.Join(all, "\n")
				where := fmt.Sprintf("%s %s", path, name)
				switch {
				case expect == "" && len(all) == 0:
					fmt.Printf("ok   %s\n", where)
				case expect == "":
					fmt.Printf("FAIL %s: rejected:\n  %s\n", where, strings.Join(all, "\n  "))
					failures++
				default:
					missing := []string{}
					for _, want := range strings.Split(expect, ";;") {
						if want = strings.TrimSpace(want); want != "" && !strings.Contains(joined, want) {
							missing = append(missing, want)
						}
					}
					if len(missing) == 0 {
						fmt.Printf("ok   %s (rejected as expected)\n", where)
					} else {
						fmt.Printf("FAIL %s: want %q in the errors, got:\n  %s\n", where, missing, strings.Join(all, "\n  "))
						failures++
					}
				}
			}
		}
	}
	if failures > 0 {
		os.Exit(1)
	}
}
