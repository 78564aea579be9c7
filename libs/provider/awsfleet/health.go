package awsfleet

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/patchwave/patchwave/libs/provider"
)

// rebootBatch is how many instances one RebootInstances call names.
const rebootBatch = 1000

// Reboot reboots running instances with RebootInstances. EC2 refuses the whole call when one
// instance is not running (IncorrectInstanceState), rebooting none; for more than 1,000
// instances (several calls) the adapter first checks every state with DescribeInstances, so
// the rule holds across calls too.
func (f *Fleet) Reboot(ctx context.Context, t provider.Target, instanceIDs []string) error {
	if len(instanceIDs) == 0 {
		return fmt.Errorf("%w: instanceIDs must not be empty", provider.ErrInvalidArgument)
	}
	if err := provider.ValidateIDs("instanceIDs", instanceIDs); err != nil {
		return err
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	if len(instanceIDs) > rebootBatch {
		insts, err := f.describeInstancesByID(ctx, c, t, instanceIDs)
		if err != nil {
			return err
		}
		for _, id := range instanceIDs {
			in, ok := insts[id]
			switch {
			case !ok:
				return fmt.Errorf("reboot %s: %w", id, provider.ErrNotFound)
			case in.State == nil || in.State.Name != ec2types.InstanceStateNameRunning:
				return fmt.Errorf("reboot %s: instance is %s: %w", id, stateName(in), provider.ErrInstanceNotRunning)
			}
		}
	}
	batches := chunks(instanceIDs, rebootBatch)
	return f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		_, err := c.ec2.RebootInstances(ctx, &ec2.RebootInstancesInput{InstanceIds: batches[i]})
		return wrapErr("ec2 RebootInstances", t.Account, err)
	})
}

func stateName(in ec2types.Instance) string {
	if in.State == nil {
		return "unknown"
	}
	return string(in.State.Name)
}

// CheckHealth reports per instance whether it is running, passes its EC2 status checks
// (DescribeInstanceStatus with IncludeAllInstances, 100 ids per call) and its SSM agent is
// online (DescribeInstanceInformation, 50 per call). Status checks still "initializing" after
// a start or reboot make the instance Initializing, not unhealthy. Unknown instances are
// absent. The agents named by provider.WithAgentOnline are not asked for: they are online.
func (f *Fleet) CheckHealth(ctx context.Context, t provider.Target, instanceIDs []string, opts ...provider.HealthOption) (map[string]provider.Health, error) {
	o := provider.ApplyHealthOptions(opts)
	c, err := f.clientsForIDs(ctx, t, "instanceIDs", instanceIDs)
	if err != nil {
		return nil, err
	}
	statuses := make(map[string]ec2types.InstanceStatus, len(instanceIDs))
	var mu sync.Mutex
	batches := chunks(instanceIDs, statusBatch)
	err = f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		ids := batches[i]
		st, err := f.describeStatus(ctx, c, ids)
		if err != nil && isNotFound(err) {
			// Some id does not exist: keep those that do (an instance-id filter does not fail).
			insts, derr := f.describeInstancesByID(ctx, c, t, ids)
			if derr != nil {
				return derr
			}
			ids = ids[:0:0]
			for _, id := range batches[i] {
				if _, ok := insts[id]; ok {
					ids = append(ids, id)
				}
			}
			st, err = nil, nil
			if len(ids) > 0 {
				st, err = f.describeStatus(ctx, c, ids)
			}
		}
		if err != nil {
			return wrapErr("ec2 DescribeInstanceStatus", t.Account, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, s := range st {
			statuses[aws.ToString(s.InstanceId)] = s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	known := make([]string, 0, len(statuses))
	ask := make([]string, 0, len(statuses))
	for _, id := range instanceIDs {
		if _, ok := statuses[id]; ok {
			known = append(known, id)
			if !o.AgentOnline[id] {
				ask = append(ask, id)
			}
		}
	}
	infos := map[string]ssmtypes.InstanceInformation{}
	if len(ask) > 0 {
		if infos, err = f.agentInfo(ctx, c, ask); err != nil {
			return nil, err
		}
	}
	out := make(map[string]provider.Health, len(known))
	for _, id := range known {
		info, ok := infos[id]
		if !ok && o.AgentOnline[id] {
			info = ssmtypes.InstanceInformation{InstanceId: aws.String(id), PingStatus: ssmtypes.PingStatusOnline}
		}
		out[id] = toHealth(statuses[id], info)
	}
	return out, nil
}

func (f *Fleet) describeStatus(ctx context.Context, c *clients, ids []string) ([]ec2types.InstanceStatus, error) {
	p := ec2.NewDescribeInstanceStatusPaginator(c.ec2, &ec2.DescribeInstanceStatusInput{
		InstanceIds:         ids,
		IncludeAllInstances: aws.Bool(true),
	})
	var out []ec2types.InstanceStatus
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.InstanceStatuses...)
	}
	return out, nil
}

func summary(s *ec2types.InstanceStatusSummary) ec2types.SummaryStatus {
	if s == nil {
		return ""
	}
	return s.Status
}

// toHealth decides: healthy when running, both status checks ok and the agent online;
// initializing when running and a status check is still initializing (or the agent has not
// reconnected since).
func toHealth(s ec2types.InstanceStatus, info ssmtypes.InstanceInformation) provider.Health {
	h := provider.Health{Agent: agentState(info)}
	if s.InstanceState != nil {
		h.State = provider.InstanceState(s.InstanceState.Name)
	}
	inst, sys := summary(s.InstanceStatus), summary(s.SystemStatus)
	var problems []string
	if h.State != provider.InstanceRunning {
		h.Detail = "instance is " + string(h.State)
		return h
	}
	initializing := inst == ec2types.SummaryStatusInitializing || sys == ec2types.SummaryStatusInitializing
	if inst != ec2types.SummaryStatusOk && inst != ec2types.SummaryStatusInitializing {
		problems = append(problems, "instance status "+nonEmpty(string(inst), "unknown"))
	}
	if sys != ec2types.SummaryStatusOk && sys != ec2types.SummaryStatusInitializing {
		problems = append(problems, "system status "+nonEmpty(string(sys), "unknown"))
	}
	if h.Agent != provider.AgentOnline {
		problems = append(problems, "agent "+string(h.Agent))
	}
	switch {
	case len(problems) == 0 && !initializing:
		h.Healthy = true
		h.Detail = "running, status checks ok, agent online"
	case initializing && (len(problems) == 0 || (len(problems) == 1 && h.Agent == provider.AgentConnectionLost)):
		h.Initializing = true
		h.Detail = "status checks initializing"
	default:
		h.Detail = strings.Join(problems, ", ")
	}
	return h
}
