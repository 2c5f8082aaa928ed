package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"gopkg.in/yaml.v3"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
)

// composeFile is the subset of the Compose specification the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Networks map[string]any            `yaml:"networks"`
}

type composeService struct {
	Image     string        `yaml:"image"`
	Build     *composeBuild `yaml:"build"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Command  []string `yaml:"command"`
	Volumes  []string `yaml:"volumes"`
	Ports    []string `yaml:"ports"`
	Networks []string `yaml:"networks"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// Docker does not run on these machines, so the compose stack is checked
// statically: every reference in it resolves, and metalflow's own services
// pass flags the binary accepts.
func TestComposeStackIsConsistent(t *testing.T) {
	root := filepath.Join("..")
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	require.NoError(t, err)
	var cf composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(false)
	require.NoError(t, dec.Decode(&cf))

	for _, want := range []string{"postgresql", "temporal", "temporal-ui", "metalflow-api", "metalflow-worker"} {
		require.Contains(t, cf.Services, want)
	}
	hostPorts := map[string]string{}
	builtImages := map[string]bool{}
	for _, svc := range cf.Services {
		if svc.Build != nil {
			builtImages[svc.Image] = true
		}
	}
	validConditions := map[string]bool{"service_started": true, "service_healthy": true, "service_completed_successfully": true}
	for name, svc := range cf.Services {
		require.True(t, svc.Image != "" || svc.Build != nil, "%s needs an image or a build", name)
		if svc.Build != nil {
			df := svc.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			_, err := os.Stat(filepath.Join(root, svc.Build.Context, df))
			require.NoError(t, err, "%s builds from a missing Dockerfile", name)
		}
		if strings.HasPrefix(svc.Image, "metalflow:") && svc.Build == nil {
			require.True(t, builtImages[svc.Image], "%s uses %s, which no service builds", name, svc.Image)
		}
		for dep, d := range svc.DependsOn {
			require.Contains(t, cf.Services, dep, "%s depends on unknown service %s", name, dep)
			require.True(t, validConditions[d.Condition], "%s: bad condition %q", name, d.Condition)
		}
		for _, v := range svc.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, "./") {
				_, err := os.Stat(filepath.Join(root, src))
				require.NoError(t, err, "%s mounts a missing path %s", name, src)
			} else if !strings.HasPrefix(src, "/") {
				require.Contains(t, cf.Volumes, src, "%s uses undeclared volume %s", name, src)
			}
		}
		for _, n := range svc.Networks {
			require.Contains(t, cf.Networks, n, "%s uses undeclared network %s", name, n)
		}
		for _, p := range svc.Ports {
			host := strings.SplitN(p, ":", 2)[0]
			require.NotContains(t, hostPorts, host, "host port %s used by %s and %s", host, name, hostPorts[host])
			hostPorts[host] = name
		}
		// metalflow's services: the binary must accept exactly these flags.
		if strings.HasPrefix(svc.Image, "metalflow:") {
			require.NotEmpty(t, svc.Command, name)
			out, err := exec.Command(binaryPath, append(append([]string{}, svc.Command...), "-h")...).CombinedOutput()
			require.NoError(t, err, "%s: metalflow %v refused its flags:\n%s", name, svc.Command, out)
		}
	}
	// The layout the worker loads parses.
	_, err = inventory.ReadLayoutFile(filepath.Join(root, "deploy/metalflow/layout.yaml"))
	require.NoError(t, err)
	// The scripts the admin-tools containers run are in the repository.
	for _, script := range []string{"deploy/temporal/setup-postgres.sh", "deploy/temporal/create-namespace.sh"} {
		st, err := os.Stat(filepath.Join(root, script))
		require.NoError(t, err)
		require.NotZero(t, st.Mode()&0o111, "%s must be executable", script)
		out, err := exec.Command("sh", "-n", filepath.Join(root, script)).CombinedOutput()
		require.NoError(t, err, "%s: %s", script, out)
	}
	// The namespace script creates every search attribute the workflows
	// upsert, with its type (a missing one fails the upsert, so the run).
	ns, err := os.ReadFile(filepath.Join(root, "deploy/temporal/create-namespace.sh"))
	require.NoError(t, err)
	for name, typ := range serverattrs.Schema() {
		kind := map[enumspb.IndexedValueType]string{enumspb.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", enumspb.INDEXED_VALUE_TYPE_DATETIME: "Datetime"}[typ]
		require.NotEmpty(t, kind, "%s: a type the script does not know", name)
		require.Contains(t, string(ns), " "+name+":"+kind, "create-namespace.sh lacks %s:%s", name, kind)
	}
}
