package awsfleet

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/patchwave/patchwave/libs/provider"
)

// API limits the adapter batches by.
const (
	// describePageSize is DescribeInstances' and DescribeSnapshots' largest page.
	describePageSize = 1000
	// instanceInfoBatch is DescribeInstanceInformation's largest page (and the InstanceIds
	// filter values we send per call).
	instanceInfoBatch = 50
	// tagBatch is how many resources one CreateTags or DeleteTags call names.
	tagBatch = 1000
	// filterValuesBatch is how many values we put in one EC2 filter.
	filterValuesBatch = 200
	// statusBatch is how many instance ids DescribeInstanceStatus takes at once.
	statusBatch = 100
)

// OSFamilyTag is the instance tag that names the OS family; without it the family is derived
// from the SSM agent's PlatformName and PlatformVersion (see OSFamily).
const OSFamilyTag = "OSFamily"

// DiscoverInstances lists the tenant's instances matching q, target by target (in Targets'
// order), one DescribeInstances page (at most 1,000 instances, sorted by id) per call of page.
// Each page's agent states come from DescribeInstanceInformation, 50 instance ids per call; an
// instance without a registered agent has Agent AgentNone.
func (f *Fleet) DiscoverInstances(ctx context.Context, q provider.DiscoverQuery, page func([]provider.Instance) error) error {
	if err := q.Validate(); err != nil {
		return err
	}
	targets, err := f.Targets(ctx, q.Tenant)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if err := f.discoverTarget(ctx, t, q, page); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fleet) discoverTarget(ctx context.Context, t provider.Target, q provider.DiscoverQuery, page func([]provider.Instance) error) error {
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	states := []string{string(ec2types.InstanceStateNameRunning)}
	if q.IncludeStopped {
		states = []string{"pending", "running", "stopping", "stopped", "shutting-down"}
	}
	filters := []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: states}}
	switch {
	case q.TagKey != "" && q.TagValue != "":
		filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + q.TagKey), Values: []string{q.TagValue}})
	case q.TagKey != "":
		filters = append(filters, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{q.TagKey}})
	}
	p := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: aws.Int32(describePageSize),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return wrapErr("ec2 DescribeInstances", t.Account, err)
		}
		var raw []ec2types.Instance
		for _, r := range out.Reservations {
			raw = append(raw, r.Instances...)
		}
		if len(raw) == 0 {
			continue
		}
		insts, err := f.toInstances(ctx, c, t, raw)
		if err != nil {
			return err
		}
		if err := page(insts); err != nil {
			return err
		}
	}
	return nil
}

// toInstances converts one page of EC2 instances, with their agents' information.
func (f *Fleet) toInstances(ctx context.Context, c *clients, t provider.Target, raw []ec2types.Instance) ([]provider.Instance, error) {
	ids := make([]string, len(raw))
	for i, r := range raw {
		ids[i] = aws.ToString(r.InstanceId)
	}
	infos, err := f.agentInfo(ctx, c, ids)
	if err != nil {
		return nil, err
	}
	out := make([]provider.Instance, len(raw))
	for i, r := range raw {
		out[i] = toInstance(t, r, infos[ids[i]])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// agentInfo reads the SSM agent information of instances, 50 ids per call; instances without a
// registered agent are absent.
func (f *Fleet) agentInfo(ctx context.Context, c *clients, ids []string) (map[string]ssmtypes.InstanceInformation, error) {
	batches := chunks(ids, instanceInfoBatch)
	var mu sync.Mutex
	infos := make(map[string]ssmtypes.InstanceInformation, len(ids))
	err := f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		p := ssm.NewDescribeInstanceInformationPaginator(c.ssm, &ssm.DescribeInstanceInformationInput{
			Filters:    []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: batches[i]}},
			MaxResults: aws.Int32(instanceInfoBatch),
		})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				if isNotFound(err) {
					// InvalidInstanceId: none of the ids has an agent.
					return nil
				}
				return wrapErr("ssm DescribeInstanceInformation", c.account.ID, err)
			}
			mu.Lock()
			for _, in := range out.InstanceInformationList {
				infos[aws.ToString(in.InstanceId)] = in
			}
			mu.Unlock()
		}
		return nil
	})
	return infos, err
}

func toInstance(t provider.Target, r ec2types.Instance, info ssmtypes.InstanceInformation) provider.Instance {
	tags := tagMap(r.Tags)
	inst := provider.Instance{
		ID:       aws.ToString(r.InstanceId),
		Tenant:   t.Tenant,
		Account:  t.Account,
		Region:   t.Region,
		Name:     tags["Name"],
		OSFamily: tags[OSFamilyTag],
		Platform: "linux",
		Agent:    agentState(info),
		Tags:     tags,
	}
	if r.State != nil {
		inst.State = provider.InstanceState(r.State.Name)
	}
	if r.Platform == ec2types.PlatformValuesWindows || strings.Contains(strings.ToLower(aws.ToString(r.PlatformDetails)), "windows") ||
		info.PlatformType == ssmtypes.PlatformTypeWindows {
		inst.Platform = "windows"
	}
	if inst.OSFamily == "" && info.InstanceId != nil {
		inst.OSFamily = OSFamily(aws.ToString(info.PlatformName), aws.ToString(info.PlatformVersion))
	}
	inst.VolumeIDs = volumeIDs(r)
	return inst
}

// volumeIDs lists the instance's EBS volumes, the root volume first, then by volume id.
func volumeIDs(r ec2types.Instance) []string {
	var root string
	var rest []string
	for _, bd := range r.BlockDeviceMappings {
		if bd.Ebs == nil || bd.Ebs.VolumeId == nil {
			continue
		}
		if aws.ToString(bd.DeviceName) == aws.ToString(r.RootDeviceName) && root == "" {
			root = *bd.Ebs.VolumeId
			continue
		}
		rest = append(rest, *bd.Ebs.VolumeId)
	}
	slices.Sort(rest)
	if root == "" {
		return rest
	}
	return append([]string{root}, rest...)
}

func agentState(info ssmtypes.InstanceInformation) provider.AgentState {
	if info.InstanceId == nil {
		return provider.AgentNone
	}
	switch info.PingStatus {
	case ssmtypes.PingStatusOnline:
		return provider.AgentOnline
	case ssmtypes.PingStatusConnectionLost:
		return provider.AgentConnectionLost
	}
	return provider.AgentInactive
}

func tagMap(tags []ec2types.Tag) map[string]string {
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9.]+`)

// OSFamily derives an OS family from the SSM agent's PlatformName and PlatformVersion, for
// instances without an OSFamily tag:
//
//	Amazon Linux, 2023.x       -> amazon-linux-2023   (and 2 -> amazon-linux-2)
//	Ubuntu, 22.04              -> ubuntu-22.04        (major.minor kept)
//	Microsoft Windows Server 2022 Datacenter, 10.0.20348 -> windows-server-2022 (year from the name)
//	Red Hat Enterprise Linux [Server], 9.2 -> rhel-9  (major version only, also for the rest)
//	CentOS Linux -> centos-N, Rocky Linux -> rocky-N, AlmaLinux -> almalinux-N,
//	Debian GNU/Linux -> debian-N, SLES / SUSE Linux Enterprise Server -> sles-N,
//	Oracle Linux -> oracle-linux-N
//
// Anything else is the name in lower kebab case with the major version ("freebsd-14"); an empty
// name gives "".
func OSFamily(platformName, platformVersion string) string {
	name := strings.ToLower(strings.TrimSpace(platformName))
	if name == "" {
		return ""
	}
	version := strings.TrimSpace(platformVersion)
	major, _, _ := strings.Cut(version, ".")
	withMajor := func(family string) string {
		if major == "" {
			return family
		}
		return family + "-" + major
	}
	switch {
	case strings.Contains(name, "windows"):
		if y := regexp.MustCompile(`\b(20[0-9]{2})\b`).FindString(name); y != "" {
			return "windows-server-" + y
		}
		return withMajor("windows")
	case strings.HasPrefix(name, "amazon linux"):
		return withMajor("amazon-linux")
	case strings.HasPrefix(name, "ubuntu"):
		parts := strings.SplitN(version, ".", 3)
		if len(parts) >= 2 {
			return "ubuntu-" + parts[0] + "." + parts[1]
		}
		return withMajor("ubuntu")
	case strings.HasPrefix(name, "red hat"):
		return withMajor("rhel")
	case strings.HasPrefix(name, "centos"):
		return withMajor("centos")
	case strings.HasPrefix(name, "rocky"):
		return withMajor("rocky")
	case strings.HasPrefix(name, "alma"):
		return withMajor("almalinux")
	case strings.HasPrefix(name, "debian"):
		return withMajor("debian")
	case strings.HasPrefix(name, "sles") || strings.HasPrefix(name, "suse"):
		return withMajor("sles")
	case strings.HasPrefix(name, "oracle"):
		return withMajor("oracle-linux")
	}
	family := strings.Trim(nonAlnum.ReplaceAllString(name, "-"), "-")
	return withMajor(family)
}

// TagInstances puts tags on instances with CreateTags, 1,000 instances per call.
func (f *Fleet) TagInstances(ctx context.Context, t provider.Target, instanceIDs []string, tags map[string]string) error {
	if err := validateTags(instanceIDs, tags); err != nil {
		return err
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ec2Tags := make([]ec2types.Tag, len(keys))
	for i, k := range keys {
		ec2Tags[i] = ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])}
	}
	batches := chunks(instanceIDs, tagBatch)
	return f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		_, err := c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: batches[i], Tags: ec2Tags})
		return wrapErr("ec2 CreateTags", t.Account, err)
	})
}

// UntagInstances removes tag keys from instances with DeleteTags, 1,000 instances per call.
func (f *Fleet) UntagInstances(ctx context.Context, t provider.Target, instanceIDs []string, keys []string) error {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = ""
	}
	if err := validateTags(instanceIDs, m); err != nil {
		return err
	}
	if err := provider.ValidateIDs("keys", keys); err != nil {
		return err
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	ec2Tags := make([]ec2types.Tag, len(keys))
	for i, k := range keys {
		ec2Tags[i] = ec2types.Tag{Key: aws.String(k)}
	}
	batches := chunks(instanceIDs, tagBatch)
	return f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		_, err := c.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: batches[i], Tags: ec2Tags})
		return wrapErr("ec2 DeleteTags", t.Account, err)
	})
}

// validateTags applies EC2's tag rules: 1..50 tags, keys 1..128 characters not starting with
// "aws:", values up to 256 characters.
func validateTags(instanceIDs []string, tags map[string]string) error {
	var errs []error
	if len(instanceIDs) == 0 {
		errs = append(errs, fmt.Errorf("%w: instanceIDs must not be empty", provider.ErrInvalidArgument))
	}
	if err := provider.ValidateIDs("instanceIDs", instanceIDs); err != nil {
		errs = append(errs, err)
	}
	if len(tags) == 0 || len(tags) > 50 {
		errs = append(errs, fmt.Errorf("%w: tags must have 1 to 50 entries, got %d", provider.ErrInvalidArgument, len(tags)))
	}
	for k, v := range tags {
		switch {
		case k == "" || len(k) > 128:
			errs = append(errs, fmt.Errorf("%w: tag key %q must have 1 to 128 characters", provider.ErrInvalidArgument, k))
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			errs = append(errs, fmt.Errorf("%w: tag key %q must not start with \"aws:\"", provider.ErrInvalidArgument, k))
		}
		if len(v) > 256 {
			errs = append(errs, fmt.Errorf("%w: tag %q value must have at most 256 characters", provider.ErrInvalidArgument, k))
		}
	}
	return errJoin(errs)
}
