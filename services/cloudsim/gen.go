package cloudsim

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// osInfo describes an OS family as EC2 and SSM show it.
type osInfo struct {
	Platform        string // Linux or Windows (SSM PlatformType)
	PlatformName    string // SSM PlatformName
	PlatformVersion string // SSM PlatformVersion
	PlatformDetails string // EC2 platformDetails
	RootDevice      string
}

var osCatalog = map[string]osInfo{
	"amazon-linux-2023":   {"Linux", "Amazon Linux", "2023", "Linux/UNIX", "/dev/xvda"},
	"amazon-linux-2":      {"Linux", "Amazon Linux", "2", "Linux/UNIX", "/dev/xvda"},
	"ubuntu-22.04":        {"Linux", "Ubuntu", "22.04", "Linux/UNIX", "/dev/sda1"},
	"ubuntu-24.04":        {"Linux", "Ubuntu", "24.04", "Linux/UNIX", "/dev/sda1"},
	"rhel-9":              {"Linux", "Red Hat Enterprise Linux", "9.4", "Red Hat Enterprise Linux", "/dev/sda1"},
	"windows-server-2019": {"Windows", "Microsoft Windows Server 2019 Datacenter", "10.0.17763", "Windows", "/dev/sda1"},
	"windows-server-2022": {"Windows", "Microsoft Windows Server 2022 Datacenter", "10.0.20348", "Windows", "/dev/sda1"},
}

// OSFamilies lists the OS families cloudsim knows (OSMix keys, the OSFamily tag's values).
func OSFamilies() []string {
	return sortedKeys(osCatalog)
}

var instanceTypes = []string{"t3.medium", "t3.large", "m5.large", "m6i.xlarge", "c6i.large", "r5.large"}

// InstanceSpec describes instances to add at run time (Server.AddInstances, POST
// /_cloudsim/instances).
type InstanceSpec struct {
	// Account is the account id. Required.
	Account string `json:"account"`
	// Region. Optional, default the account's first region.
	Region string `json:"region,omitempty"`
	// Count is how many instances to add. Optional, default 1, at most 100000.
	Count int `json:"count,omitempty"`
	// OSFamily (see OSFamilies). Optional, default picked from the default OS mix.
	OSFamily string `json:"os_family,omitempty"`
	// Tags are put on every instance (besides Name and OSFamily).
	Tags map[string]string `json:"tags,omitempty"`
	// Waves tags the instances PatchWave=1..Waves round robin; 0: no wave tag unless in Tags.
	Waves int `json:"waves,omitempty"`
	// NoAgent makes instances without an SSM agent.
	NoAgent bool `json:"no_agent,omitempty"`
	// Stopped makes stopped instances.
	Stopped bool `json:"stopped,omitempty"`
	// Volumes is the number of attached volumes, root first, 1 to 3. Optional, default 1 to 3
	// from a hash.
	Volumes int `json:"volumes,omitempty"`
	// InstalledPatches are patch ids already installed.
	InstalledPatches []string `json:"installed_patches,omitempty"`
}

func (s *InstanceSpec) validate(w *world) error {
	var errs []error
	a := w.accounts[s.Account]
	switch {
	case a == nil || a.Provider:
		errs = append(errs, fmt.Errorf("account %q: unknown tenant account", s.Account))
	case s.Region == "":
		s.Region = a.Regions[0]
	case !containsString(a.Regions, s.Region):
		errs = append(errs, fmt.Errorf("region %q: not a region of account %s (%s)", s.Region, a.ID, strings.Join(a.Regions, ", ")))
	}
	if s.Count == 0 {
		s.Count = 1
	}
	if s.Count < 1 || s.Count > 100000 {
		errs = append(errs, fmt.Errorf("count %d: must be from 1 to 100000", s.Count))
	}
	if _, ok := osCatalog[s.OSFamily]; s.OSFamily != "" && !ok {
		errs = append(errs, fmt.Errorf("os_family %q: unknown (known: %s)", s.OSFamily, strings.Join(OSFamilies(), ", ")))
	}
	if s.Volumes < 0 || s.Volumes > 3 {
		errs = append(errs, fmt.Errorf("volumes %d: must be from 1 to 3 (0: from a hash)", s.Volumes))
	}
	if s.Waves < 0 || s.Waves > 100 {
		errs = append(errs, fmt.Errorf("waves %d: must be from 0 to 100", s.Waves))
	}
	for k := range s.Tags {
		if k == "" || len(k) > 128 || strings.HasPrefix(k, "aws:") {
			errs = append(errs, fmt.Errorf("tags %q: key must be 1-128 characters and must not start with aws: (reserved)", k))
		}
	}
	return errors.Join(errs...)
}

// newInstanceParams are the choices for one new instance.
type newInstanceParams struct {
	account, region, os string
	agent, stopped      bool
	volumes             int
	tags                map[string]string
	installed           []string
}

// createInstance adds one instance to the world and its indexes.
func (w *world) createInstance(p newInstanceParams, now time.Time) *instance {
	id := w.newID("i")
	info := osCatalog[p.os]
	h := hashBytes(w.seed, "instance", id)
	azs := "abc"
	in := &instance{
		ID: id, Account: p.account, Region: p.region, AZ: p.region + string(azs[int(h[0])%3]),
		Ord: w.nextOrd(), State: "running", StateSince: now, LaunchTime: now, BootedAt: now.Add(-w.timing.Boot),
		OS: p.os, InstanceType: instanceTypes[int(h[1])%len(instanceTypes)],
		ImageID:   "ami-" + hashHex(w.seed, 17, "ami", p.os),
		PrivateIP: fmt.Sprintf("10.%d.%d.%d", h[2], h[3], 1+int(h[4])%254),
		Agent:     p.agent, Tags: map[string]string{},
	}
	if p.stopped {
		in.State = "stopped"
	}
	n := p.volumes
	if n == 0 {
		n = 1 + int(h[5])%3
	}
	name := p.tags["Name"]
	if name == "" {
		name = p.account + "-" + strconv.FormatUint(in.Ord, 10)
	}
	devices := []string{info.RootDevice, "/dev/sdf", "/dev/sdg"}
	for i := range n {
		size := 8
		if info.Platform == "Windows" {
			size = 30
		}
		if i > 0 {
			size = 50 * i
		}
		in.Volumes = append(in.Volumes, &volume{ID: w.newID("vol"), Device: devices[i], SizeGiB: size,
			Tags: map[string]string{"Name": name}, AttachTime: now})
	}
	in.Tags["Name"] = name
	in.Tags["OSFamily"] = p.os
	for k, v := range p.tags {
		in.Tags[k] = v
	}
	if len(p.installed) > 0 {
		in.Patches = map[string]*patchRecord{}
		for _, pid := range p.installed {
			rec := w.patchMeta(in, pid, "")
			rec.State, rec.InstalledTime = "INSTALLED", now
			in.Patches[pid] = &rec
		}
	}
	w.instances[id] = in
	w.indexInstance(in)
	w.markInstance(in)
	return in
}

// patchMeta gives a patch its title, KB id, classification and severity: from the override list
// where it has them, otherwise derived from the id.
func (w *world) patchMeta(in *instance, id, title string) patchRecord {
	if title == "" {
		title = id
	}
	windows := osCatalog[in.OS].Platform == "Windows"
	u := hashUnit(w.seed, "patch-class", id)
	rec := patchRecord{ID: id, Title: title}
	severities := []string{"Critical", "Important", "Medium", "Low"}
	rec.Severity = severities[int(u*4)%4]
	if windows {
		if strings.HasPrefix(strings.ToUpper(id), "KB") {
			rec.KBID = strings.ToUpper(id)
		}
		rec.Classification = []string{"SecurityUpdates", "CriticalUpdates", "Updates"}[int(u*3)%3]
	} else {
		rec.Classification = []string{"Security", "Bugfix", "Enhancement"}[int(u*3)%3]
	}
	return rec
}

// generate creates an account's instances from its configuration.
func (w *world) generate(a AccountConfig, now time.Time) {
	mix := sortedKeys(a.OSMix)
	total := 0.0
	for _, k := range mix {
		total += a.OSMix[k]
	}
	for i := range a.Instances {
		idx := strconv.Itoa(i)
		u := hashUnit(w.seed, "os", a.ID, idx) * total
		os := mix[len(mix)-1]
		for _, k := range mix {
			if u < a.OSMix[k] {
				os = k
				break
			}
			u -= a.OSMix[k]
		}
		tags := map[string]string{"Name": fmt.Sprintf("%s-%05d", a.Tenant, i+1)}
		if a.Waves > 0 {
			tags["PatchWave"] = strconv.Itoa(i%a.Waves + 1)
		}
		w.createInstance(newInstanceParams{
			account: a.ID, region: a.Regions[i%len(a.Regions)], os: os,
			agent:     hashUnit(w.seed, "agentless", a.ID, idx) >= a.AgentlessFraction,
			stopped:   hashUnit(w.seed, "stopped", a.ID, idx) < a.StoppedFraction,
			tags:      tags,
			installed: a.InstalledPatches,
		}, now)
	}
}

// addInstances creates instances from a spec.
func (w *world) addInstances(spec InstanceSpec, now time.Time) ([]string, error) {
	if err := spec.validate(w); err != nil {
		return nil, err
	}
	defaultMix := []string{"amazon-linux-2023", "ubuntu-22.04", "windows-server-2022", "rhel-9"}
	ids := make([]string, 0, spec.Count)
	for i := range spec.Count {
		os := spec.OSFamily
		if os == "" {
			os = defaultMix[int(w.meta.Ord)%len(defaultMix)]
		}
		tags := cloneTags(spec.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		if spec.Waves > 0 {
			tags["PatchWave"] = strconv.Itoa(i%spec.Waves + 1)
		}
		in := w.createInstance(newInstanceParams{account: spec.Account, region: spec.Region, os: os,
			agent: !spec.NoAgent, stopped: spec.Stopped, volumes: spec.Volumes, tags: tags, installed: spec.InstalledPatches}, now)
		ids = append(ids, in.ID)
	}
	return ids, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sortedTagKeys gives a stable tag order for responses.
func sortedTagKeys(tags map[string]string) []string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
