// Command twill-libcni drives CNI plugins through libcni, the library containerd and CRI-O
// embed, so tests see a plugin exactly as a container runtime shows it to one: the same stdin
// (name and cniVersion injected, runtimeConfig filtered by declared capabilities, prevResult
// from the result cache) and the same cache that CHECK and DEL read back.
//
//	twill-libcni add|check|del NETNS_PATH --conflist FILE [--cni-path DIR[:DIR]] [--ifname eth0]
//	    [--container-id ID] [--cache-dir DIR] [--cap-args JSON] [--args K=V;...]
//	twill-libcni status|gc --conflist FILE [--cni-path DIR[:DIR]] [--cache-dir DIR]
//	    [--valid-attachments '[{"containerID":"…","ifname":"eth0"}]']
//
// ADD prints its result on stdout; the other commands print nothing on success. A failure is
// one JSON line on stderr, {"code","msg","details"} of the plugin's CNI error when there is
// one plus "error" (the whole message), and exit status 1.
//
// Built against Debian's libcni 1.1.2: it knows spec versions up to 1.0.0 (a 1.1.0 result cannot
// be parsed, so add/check/del need a conflist of cniVersion ≤ 1.0.0) and has no STATUS or GC.
// status and gc therefore invoke the plugins through libcni's invoke package the way libcni 1.2
// does: nothing for a cniVersion below 1.1.0 apart from gc's DEL of stale cached attachments.
// 1.1.2's cache does not record the netns, so those DELs go out with an empty CNI_NETNS.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// firstSpecWithStatusAndGC is the spec version whose plugins understand STATUS and GC.
const firstSpecWithStatusAndGC = "1.1.0"

type options struct {
	command          string
	netns            string
	conflist         string
	cniPath          string
	ifName           string
	containerID      string
	cacheDir         string
	capArgs          string
	cniArgs          string
	validAttachments string
}

// attachment is one entry of cni.dev/valid-attachments (spec 1.1, GC).
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

// cachedAttachment is the part of libcni's result cache file that GC needs.
type cachedAttachment struct {
	Kind           string                 `json:"kind"`
	ContainerID    string                 `json:"containerId"`
	IfName         string                 `json:"ifName"`
	NetworkName    string                 `json:"networkName"`
	CniArgs        [][2]string            `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]interface{} `json:"capabilityArgs,omitempty"`
}

// errorList keeps every failure of a GC; errors.As looks into the first one.
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, len(l))
	for i, err := range l {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (l errorList) Unwrap() error { return l[0] }

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(argv []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if err := dispatch(argv, getenv, stdout, stderr); err != nil {
		reportError(stderr, err)
		return 1
	}
	return 0
}

func dispatch(argv []string, getenv func(string) string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(argv, getenv)
	if err != nil {
		return err
	}
	list, err := loadNetworkList(opts.conflist)
	if err != nil {
		return err
	}
	paths := filepath.SplitList(opts.cniPath)
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: stderr},
		PluginDecoder: version.PluginDecoder{},
	}
	cni := libcni.NewCNIConfigWithCacheDir(paths, opts.cacheDir, exec)
	ctx := context.Background()

	switch opts.command {
	case "status":
		return statusNetworkList(ctx, exec, paths, list, stderr)
	case "gc":
		valid, err := parseValidAttachments(opts.validAttachments)
		if err != nil {
			return err
		}
		return gcNetworkList(ctx, cni, exec, paths, list, opts.cacheDir, valid, stderr)
	}

	rt, err := runtimeConf(opts)
	if err != nil {
		return err
	}
	switch opts.command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.PrintTo(stdout)
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	default:
		return cni.DelNetworkList(ctx, list, rt)
	}
}

func parseOptions(argv []string, getenv func(string) string) (options, error) {
	opts := options{}
	if len(argv) == 0 {
		return opts, errors.New("usage: twill-libcni add|check|del|status|gc [NETNS_PATH] --conflist FILE [flags]")
	}
	opts.command = argv[0]

	fs := flag.NewFlagSet("twill-libcni", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&opts.conflist, "conflist", "", "network configuration list (.conflist) or single .conf")
	fs.StringVar(&opts.cniPath, "cni-path", getenv("CNI_PATH"), "plugin directories, colon-separated")
	fs.StringVar(&opts.ifName, "ifname", withDefault(getenv("CNI_IFNAME"), "eth0"), "interface name in the netns")
	fs.StringVar(&opts.containerID, "container-id", "", "container ID (default derived from the netns path)")
	fs.StringVar(&opts.cacheDir, "cache-dir", libcni.CacheDir, "libcni result cache directory")
	fs.StringVar(&opts.capArgs, "cap-args", getenv("CAP_ARGS"), "capability arguments as a JSON object")
	fs.StringVar(&opts.cniArgs, "args", getenv("CNI_ARGS"), "CNI_ARGS as K=V;K=V")
	fs.StringVar(&opts.validAttachments, "valid-attachments", "[]", "GC: JSON list of {containerID, ifname}")

	// Flags may come before or after the netns path, so parse around positional arguments.
	var positional []string
	rest := argv[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			return opts, fmt.Errorf("parsing arguments of %s: %w", opts.command, err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		rest = rest[1:]
	}

	switch opts.command {
	case "add", "check", "del":
		if len(positional) != 1 {
			return opts, fmt.Errorf("%s takes exactly one NETNS_PATH, got %d arguments", opts.command, len(positional))
		}
		netns, err := filepath.Abs(positional[0])
		if err != nil {
			return opts, fmt.Errorf("resolving netns path %q: %w", positional[0], err)
		}
		opts.netns = netns
	case "status", "gc":
		if len(positional) != 0 {
			return opts, fmt.Errorf("%s takes no NETNS_PATH, got %q", opts.command, positional)
		}
	default:
		return opts, fmt.Errorf("unknown command %q: want add, check, del, status or gc", opts.command)
	}
	if opts.conflist == "" {
		return opts, errors.New("--conflist is required")
	}
	if opts.containerID == "" && opts.netns != "" {
		opts.containerID = containerIDFor(opts.netns)
	}
	return opts, nil
}

func withDefault(value, fallback string) string {
	if value == "" {
		return fallback
	}
	return value
}

// containerIDFor names an attachment after its netns the way cnitool does, so repeated runs
// against one netns hit the same cache entry without a flag.
func containerIDFor(netns string) string {
	sum := sha512.Sum512([]byte(netns))
	return fmt.Sprintf("cnitool-%x", sum[:10])
}

// loadNetworkList accepts a conflist, or a single plugin conf that libcni wraps into a
// one-plugin list as runtimes do for *.conf files.
func loadNetworkList(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading network config %s: %w", path, err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("parsing network config %s: %w", path, err)
	}
	if _, isList := probe["plugins"]; isList {
		list, err := libcni.ConfListFromBytes(data)
		if err != nil {
			return nil, fmt.Errorf("loading conflist %s: %w", path, err)
		}
		return list, nil
	}
	conf, err := libcni.ConfFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("loading conf %s: %w", path, err)
	}
	list, err := libcni.ConfListFromConf(conf)
	if err != nil {
		return nil, fmt.Errorf("wrapping conf %s into a list: %w", path, err)
	}
	return list, nil
}

func runtimeConf(opts options) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: opts.containerID,
		NetNS:       opts.netns,
		IfName:      opts.ifName,
	}
	args, err := parseCNIArgs(opts.cniArgs)
	if err != nil {
		return nil, err
	}
	rt.Args = args
	if opts.capArgs != "" {
		if err := json.Unmarshal([]byte(opts.capArgs), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("parsing --cap-args %q: %w", opts.capArgs, err)
		}
	}
	return rt, nil
}

func parseCNIArgs(raw string) ([][2]string, error) {
	if raw == "" {
		return nil, nil
	}
	var args [][2]string
	for _, pair := range strings.Split(raw, ";") {
		kv := strings.SplitN(pair, "=", 2)
		if len(kv) != 2 || kv[0] == "" {
			return nil, fmt.Errorf("parsing --args: %q is not K=V", pair)
		}
		args = append(args, [2]string{kv[0], kv[1]})
	}
	return args, nil
}

func parseValidAttachments(raw string) ([]attachment, error) {
	valid := []attachment{}
	if err := json.Unmarshal([]byte(raw), &valid); err != nil {
		return nil, fmt.Errorf("parsing --valid-attachments %q: %w", raw, err)
	}
	if valid == nil {
		// JSON null: send an empty list, which tells plugins that nothing is in use.
		valid = []attachment{}
	}
	return valid, nil
}

func supportsStatusAndGC(list *libcni.NetworkConfigList) bool {
	atLeast, err := version.GreaterThanOrEqualTo(list.CNIVersion, firstSpecWithStatusAndGC)
	return err == nil && atLeast
}

// statusNetworkList asks every plugin of the list for STATUS and stops at the first that is
// not ready, so its error code reaches the caller unchanged.
func statusNetworkList(ctx context.Context, exec invoke.Exec, paths []string, list *libcni.NetworkConfigList, stderr io.Writer) error {
	if !supportsStatusAndGC(list) {
		fmt.Fprintf(stderr, "twill-libcni: cniVersion %q has no STATUS; no plugin invoked\n", list.CNIVersion)
		return nil
	}
	inject := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
	for _, plugin := range list.Plugins {
		if err := invokeNetworkCommand(ctx, exec, paths, "STATUS", plugin, inject); err != nil {
			return fmt.Errorf("plugin %s failed (status): %w", plugin.Network.Type, err)
		}
	}
	return nil
}

// gcNetworkList first DELs every cached attachment of this network that the caller did not
// list as valid, then, for spec 1.1 lists, sends GC with the valid list to every plugin.
func gcNetworkList(ctx context.Context, cni *libcni.CNIConfig, exec invoke.Exec, paths []string,
	list *libcni.NetworkConfigList, cacheDir string, valid []attachment, stderr io.Writer) error {
	disabled, err := gcDisabled(list)
	if err != nil {
		return err
	}
	if disabled {
		return nil
	}

	keep := make(map[attachment]bool, len(valid))
	for _, a := range valid {
		keep[a] = true
	}
	var errs errorList
	for _, cached := range readCachedAttachments(cacheDir, list.Name) {
		if keep[attachment{ContainerID: cached.ContainerID, IfName: cached.IfName}] {
			continue
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    cached.ContainerID,
			IfName:         cached.IfName,
			Args:           cached.CniArgs,
			CapabilityArgs: cached.CapabilityArgs,
		}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("deleting stale attachment %s/%s: %w", cached.ContainerID, cached.IfName, err))
		}
	}

	if !supportsStatusAndGC(list) {
		fmt.Fprintf(stderr, "twill-libcni: cniVersion %q has no GC; only stale cached attachments deleted\n", list.CNIVersion)
	} else {
		inject := map[string]interface{}{
			"name":                      list.Name,
			"cniVersion":                list.CNIVersion,
			"cni.dev/valid-attachments": valid,
		}
		for _, plugin := range list.Plugins {
			if err := invokeNetworkCommand(ctx, exec, paths, "GC", plugin, inject); err != nil {
				errs = append(errs, fmt.Errorf("plugin %s failed (gc): %w", plugin.Network.Type, err))
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// gcDisabled reads the spec 1.1 "disableGC" key, which libcni 1.1.2's list type does not carry.
func gcDisabled(list *libcni.NetworkConfigList) (bool, error) {
	var raw struct {
		DisableGC *bool `json:"disableGC"`
	}
	if err := json.Unmarshal(list.Bytes, &raw); err != nil {
		return false, fmt.Errorf("reading disableGC of network %q: %w", list.Name, err)
	}
	return raw.DisableGC != nil && *raw.DisableGC, nil
}

// readCachedAttachments lists the cache entries of one network. A missing cache directory means
// no attachments; files that are not libcni cache entries are skipped, as libcni does.
func readCachedAttachments(cacheDir, network string) []cachedAttachment {
	dir := filepath.Join(cacheDir, "results")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var found []cachedAttachment
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, entry.Name()))
		if err != nil {
			continue
		}
		var cached cachedAttachment
		if json.Unmarshal(data, &cached) != nil || cached.Kind != libcni.CNICacheV1 {
			continue
		}
		if cached.NetworkName == network {
			found = append(found, cached)
		}
	}
	return found
}

// invokeNetworkCommand runs a command that concerns the network rather than one attachment, so
// CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_ARGS are empty.
func invokeNetworkCommand(ctx context.Context, exec invoke.Exec, paths []string, command string,
	plugin *libcni.NetworkConfig, inject map[string]interface{}) error {
	conf, err := libcni.InjectConf(plugin, inject)
	if err != nil {
		return fmt.Errorf("building %s config: %w", command, err)
	}
	pluginPath, err := exec.FindInPath(plugin.Network.Type, paths)
	if err != nil {
		return err
	}
	args := &invoke.Args{Command: command, Path: strings.Join(paths, string(os.PathListSeparator))}
	return invoke.ExecPluginWithoutResult(ctx, pluginPath, conf.Bytes, args, exec)
}

// reportError writes one JSON line, so a test can read the CNI error code a plugin returned
// even when libcni wrapped it in context.
func reportError(w io.Writer, err error) {
	doc := struct {
		Code    *uint  `json:"code,omitempty"`
		Msg     string `json:"msg,omitempty"`
		Details string `json:"details,omitempty"`
		Error   string `json:"error"`
	}{Error: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		code := cniErr.Code
		doc.Code, doc.Msg, doc.Details = &code, cniErr.Msg, cniErr.Details
	}
	line, marshalErr := json.Marshal(doc)
	if marshalErr != nil {
		fmt.Fprintf(w, "twill-libcni: %v\n", err)
		return
	}
	fmt.Fprintf(w, "%s\n", line)
}
